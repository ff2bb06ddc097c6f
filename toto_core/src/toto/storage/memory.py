"""In-process storage for tests and demos; nothing survives a restart."""

from __future__ import annotations

import copy
import time
from typing import Any

from toto.storage import AccountRecord, DuplicateAccount, SessionRecord, Storage


class MemoryStorage(Storage):
    """Dicts in one process. Atomic by construction: no method awaits in the middle."""

    def __init__(self, options: Any = None) -> None:
        self.accounts: dict[str, AccountRecord] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.user_sessions: dict[str, set[str]] = {}
        #: key -> [value, expires]
        self.counters: dict[str, list[float]] = {}
        self.db = self

    async def ping(self) -> bool:
        return True

    async def create_account(self, user_id: str, password_hash: str, fields: dict[str, Any]) -> None:
        if user_id in self.accounts:
            raise DuplicateAccount(user_id)
        self.accounts[user_id] = AccountRecord(user_id, password_hash, copy.deepcopy(fields))

    async def get_account(self, user_id: str) -> AccountRecord | None:
        account = self.accounts.get(user_id)
        return copy.deepcopy(account) if account else None

    async def update_account(
        self, user_id: str, password_hash: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        account = self.accounts.get(user_id)
        if account is None:
            return
        if password_hash is not None:
            account.password_hash = password_hash
        if fields:
            account.fields.update(copy.deepcopy(fields))

    async def store_session(self, record: SessionRecord) -> None:
        self._forget(record.session_id)
        self.sessions[record.session_id] = copy.copy(record)
        if record.user_id is not None:
            self.user_sessions.setdefault(record.user_id, set()).add(record.session_id)

    async def load_session(self, session_id: str) -> SessionRecord | None:
        record = self.sessions.get(session_id)
        if record is None:
            return None
        if record.expired():
            self._forget(session_id)
            return None
        return copy.copy(record)

    async def touch_session(self, session_id: str, expires: float) -> None:
        record = self.sessions.get(session_id)
        if record is not None:
            record.expires = expires

    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        record = self.sessions.get(session_id)
        if record is None or record.expired() or (version is not None and record.version != version):
            return None
        record.state = state
        record.version += 1
        return record.version

    async def increment(self, key: str, ttl: float, amount: int = 1) -> int:
        now = time.time()
        counter = self.counters.get(key)
        if counter is None or counter[1] <= now:
            if len(self.counters) >= 100_000:
                self._purge_counters(now)
            counter = self.counters[key] = [0, now + ttl]
        counter[0] += amount
        return int(counter[0])

    def _purge_counters(self, now: float) -> None:
        for key in [k for k, (_, expires) in self.counters.items() if expires <= now]:
            del self.counters[key]

    async def delete_session(self, session_id: str) -> None:
        self._forget(session_id)

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        for session_id in list(self.user_sessions.get(user_id, ())):
            if session_id != keep:
                self._forget(session_id)

    async def purge_expired(self) -> int:
        now = time.time()
        expired = [sid for sid, record in self.sessions.items() if record.expired(now)]
        for session_id in expired:
            self._forget(session_id)
        self._purge_counters(now)
        return len(expired)

    def _forget(self, session_id: str) -> None:
        record = self.sessions.pop(session_id, None)
        if record is not None and record.user_id is not None:
            ids = self.user_sessions.get(record.user_id)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del self.user_sessions[record.user_id]
