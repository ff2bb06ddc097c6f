"""The storage interface every backend implements, and the records it stores.

A backend is one class of about a dozen async methods. It stores opaque bytes for
session state (the core serializes state with a safe serializer) and never
interprets password hashes. ``toto.testing.StorageContract`` is the test suite
every backend must pass.

What guards a whole deployment lives here too, so that every process and server
sharing the storage sees the same: ``increment`` (an atomic counter with expiry:
login attempts), ``first_seen`` (a "seen once" mark with expiry: the replay cache
of signed requests) and the version that ``save_state`` checks (concurrent writes
of one session's state from several processes: the loser is told, never lost).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

from toto.exceptions import DuplicateAccount, StorageUnavailable

__all__ = [
    "AccountRecord",
    "DuplicateAccount",
    "SessionRecord",
    "Storage",
    "StorageUnavailable",
]


@dataclass
class AccountRecord:
    """An account: the lower-cased user id, its password hash and the extra fields."""

    user_id: str
    password_hash: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class SessionRecord:
    """A session as stored.

    ``user_id`` is None for an anonymous session. ``expires`` is unix seconds.
    ``state`` is the serialized state dict (bytes from the state serializer).
    ``key`` is the per-session signing key of the ``session_key`` mode, else None.
    ``version`` counts the writes of ``state``; ``save_state`` compares it.
    """

    session_id: str
    user_id: str | None
    expires: float
    state: bytes = b""
    key: str | None = None
    version: int = 0

    def expired(self, now: float | None = None) -> bool:
        return self.expires <= (time.time() if now is None else now)


class Storage(abc.ABC):
    """Where accounts and sessions live. One instance per server process.

    Every method is a coroutine and must never block the event loop. A backend
    that cannot reach its database raises ``StorageUnavailable`` (answered as
    1013/503) and recovers by itself when the database returns.
    """

    #: The backend's native handle (an engine, a client, a database object);
    #: methods reach it as ``handler.connection.db``.
    db: Any = None

    async def open(self) -> None:
        """Connect and create what the backend needs (tables, indexes). Called once."""

    async def close(self) -> None:
        """Release connections. Called once at shutdown."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Return True when the database answers."""

    @abc.abstractmethod
    async def create_account(self, user_id: str, password_hash: str, fields: dict[str, Any]) -> None:
        """Create an account atomically; raise ``DuplicateAccount`` if ``user_id`` exists,
        even when two creates race."""

    @abc.abstractmethod
    async def get_account(self, user_id: str) -> AccountRecord | None:
        """Return the account or None."""

    @abc.abstractmethod
    async def update_account(
        self, user_id: str, password_hash: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        """Replace the password hash (when given) and merge ``fields`` into the account's fields."""

    @abc.abstractmethod
    async def store_session(self, record: SessionRecord) -> None:
        """Insert or replace a session."""

    @abc.abstractmethod
    async def load_session(self, session_id: str) -> SessionRecord | None:
        """Return the session, or None when it is unknown or expired (never an expired one)."""

    @abc.abstractmethod
    async def touch_session(self, session_id: str, expires: float) -> None:
        """Move the session's expiry to ``expires`` (sliding expiry)."""

    @abc.abstractmethod
    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        """Replace the session's state bytes and raise its version by one; return the new version.

        With ``version``, write only if the stored version is still ``version`` (a
        compare-and-swap that holds between processes and servers). Return None and
        write nothing when it is not, or when the session is gone."""

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Remove one session; a no-op when it is gone."""

    @abc.abstractmethod
    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        """Remove every session of ``user_id`` except the one whose id is ``keep``."""

    @abc.abstractmethod
    async def increment(self, key: str, ttl: float, amount: int = 1) -> int:
        """Add ``amount`` to the counter ``key`` and return its new value, atomically for
        every process and server of the deployment.

        A counter that does not exist or has expired starts from 0 and expires ``ttl``
        seconds after that start (a fixed window); later increments do not move its
        expiry. Keys are at most 200 characters of ASCII (the core hashes what users
        send into them)."""

    async def first_seen(self, key: str, ttl: float) -> bool:
        """Mark ``key`` as seen for ``ttl`` seconds: True the first time, False while the
        mark lives, exactly once however many processes ask at the same moment.
        A backend with a cheaper native form (Redis ``SET NX``) overrides it."""
        return await self.increment(key, ttl) == 1

    async def purge_expired(self) -> int:
        """Delete expired sessions (and expired counters), returning how many sessions.
        Backends with native expiry (Redis TTL, Mongo TTL index) need not override it."""
        return 0
