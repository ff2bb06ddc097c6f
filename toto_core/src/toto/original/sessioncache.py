"""Sessions kept by a session cache (the original's ``db_connection.set_session_cache``).

``CachedSessions(cache, storage)`` stands in for the storage's session calls in the
server's ``SessionManager``: a new session's id is what ``cache.store_session`` returns
for its data, and loading a session asks ``cache.load_session`` (an id the cache refuses
is an unknown session, 1007). Accounts and everything else stay in the storage.

The session's data lives in its id, so it cannot change without a new id: its expiry does
not slide (``session_renew`` does nothing) and ``session.save()`` is refused (1000, saying
so). Set a session's state before the client gets its id, or keep state in storage.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from toto.exceptions import ERROR_SERVER, TotoException
from toto.storage import SessionRecord

#: A session id that holds its session: base64url, up to 8 KiB (keep the state small).
CACHED_SESSION_ID = re.compile(r"[A-Za-z0-9_\-=]{16,8192}\Z")


class CachedSessions:
    """The storage, with its session calls answered by ``cache``."""

    def __init__(self, cache: Any, storage: Any) -> None:
        self.cache = cache
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    async def store_session(self, record: SessionRecord) -> None:
        data = {
            "session_id": record.session_id,
            "user_id": record.user_id,
            "expires": record.expires,
            "state": base64.b64encode(record.state).decode("ascii"),
        }
        if record.key:
            data["key"] = record.key
        record.session_id = self.cache.store_session(data)

    async def load_session(self, session_id: str) -> SessionRecord | None:
        try:
            data = self.cache.load_session(session_id)
            record = SessionRecord(
                session_id,
                data["user_id"],
                float(data["expires"]),
                base64.b64decode(data.get("state") or ""),
                data.get("key"),
            )
        except Exception:
            return None
        return record if record.expires > time.time() else None

    async def touch_session(self, session_id: str, expires: float) -> None:
        """An expiry held by the client cannot slide."""

    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        raise TotoException(ERROR_SERVER, "A session kept by the client (ClientCache) cannot be saved again.")

    async def delete_session(self, session_id: str) -> None:
        self.cache.remove_session(session_id)

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        """The client holds them: nothing to delete."""
