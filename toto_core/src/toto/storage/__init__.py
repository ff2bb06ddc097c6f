"""The storage interface every backend implements, and the records it stores.

A backend is one class of about a dozen async methods. It stores opaque bytes for
session state (the core serializes state with a safe serializer) and never
interprets password hashes. ``toto.testing.StorageContract`` is the test suite
every backend must pass.
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
    """

    session_id: str
    user_id: str | None
    expires: float
    state: bytes = b""
    key: str | None = None

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
    async def save_state(self, session_id: str, state: bytes) -> None:
        """Replace the session's state bytes; a no-op when the session is gone."""

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Remove one session; a no-op when it is gone."""

    @abc.abstractmethod
    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        """Remove every session of ``user_id`` except the one whose id is ``keep``."""

    async def purge_expired(self) -> int:
        """Delete expired sessions, returning how many. Backends with native expiry
        (Redis TTL, Mongo TTL index) need not override it."""
        return 0
