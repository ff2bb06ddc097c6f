"""Sessions: creation, loading, sliding expiry, state and per-session serialization."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time
import warnings
from collections.abc import Generator, Iterator, Mapping, MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from toto.exceptions import ERROR_SERVER, ERROR_SESSION_CONFLICT, TotoException
from toto.original.account import TotoAccount
from toto.storage import SessionRecord
from toto.storage.checks import normalize_user_id

if TYPE_CHECKING:
    from toto.serializers import Serializer
    from toto.storage import Storage

log = logging.getLogger("toto.sessions")

_SESSION_ID = re.compile(r"[A-Za-z0-9_\-]{16,128}\Z")


#: Length of a session id made by ``new_session_id`` (the original's ``SESSION_ID_LENGTH``).
SESSION_ID_LENGTH = 22

# The serializer of the original's ``TotoSession.dumps`` / ``loads`` (``set_serializer``).
_data_serializer: ModuleType = json


class _Detached:
    """The manager of a session made from its data (``TotoSession(db, session_data)``):
    it reads and writes state with ``TotoSession.dumps``/``loads`` and has no storage."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def encode_state(self, state: dict[str, Any]) -> Any:
        return Session.dumps(state)

    def decode_state(self, data: Any) -> dict[str, Any]:
        return dict(Session.loads(data)) if data else {}

    @property
    def storage(self) -> Any:
        raise TotoException(ERROR_SERVER, "This session was made from its data: it is not attached to a server.")


def new_session_id() -> str:
    """22 characters of base64url for 16 random bytes (128 bits)."""
    return secrets.token_urlsafe(16)


def new_session_key() -> str:
    """32 random bytes as unpadded base64url (session_key signing mode)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


class _LockEntry:
    __slots__ = ("lock", "users", "version")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.version = 0
        self.users = 0


class Session(MutableMapping[str, Any]):
    """The caller's session as methods see it (``handler.session``).

    It acts as a dict of its state (``session["cart"]``); ``save_state()`` persists
    the state. Call it from sync code and the write is finished before the response
    goes out; from async code, ``await session.save_state()``.
    """

    def __init__(
        self,
        manager: SessionManager | Any,
        record: SessionRecord | Mapping[str, Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(record, Mapping):
            # The original's TotoSession(db, session_data): a session from its data, detached.
            data = record
            record = SessionRecord(data["session_id"], data["user_id"], data["expires"], key=data.get("key"))
            saved = data.get("state")
            manager = _Detached(manager)
            state = dict(saved) if isinstance(saved, Mapping) else manager.decode_state(saved)
        self._manager = manager
        self._record = record
        self._state = state
        self._pending: asyncio.Future[None] | None = None
        self._lock_entry: _LockEntry | None = None
        self._loaded_version = 0
        self._locked = False
        #: The storage write of a session made by create_session (toto.dbconnection.Pending), else None.
        self.creation: Any = None

    # -- identity -------------------------------------------------------------------
    @property
    def record(self) -> SessionRecord:
        """What the storage keeps of the session (``Storage.store_session`` writes it)."""
        return self._record

    @property
    def session_id(self) -> str:
        return self._record.session_id

    @session_id.setter
    def session_id(self, value: str) -> None:
        # The original's session caches give a session a new id when they store it.
        self._record.session_id = value

    @property
    def user_id(self) -> str | None:
        return self._record.user_id

    @property
    def expires(self) -> float:
        return self._record.expires

    @property
    def key(self) -> str | None:
        return self._record.key

    def to_response(self) -> dict[str, Any]:
        record = self._record
        return {"session_id": record.session_id, "expires": record.expires, "user_id": record.user_id or ""}

    # -- state ----------------------------------------------------------------------
    # The original's dict proxy (toto.session.TotoSession): a missing key reads as None,
    # deleting one does nothing. Unlike the original, a stored falsy value (0, "", [])
    # reads back as stored rather than as None.
    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state = self._manager.decode_state(self._record.state)
        return self._state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"session.state must be a dict, not {type(value).__name__}")
        self._state = value

    def __getitem__(self, key: str) -> Any:
        return self.state.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.state[key] = value

    def __delitem__(self, key: str) -> None:
        self.state.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self.state

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)

    def __bool__(self) -> bool:
        # A session is there even when its state is empty: seed code tests `if not handler.session`.
        return True

    # Mapping's own versions go through __getitem__ and KeyError, which a proxy that
    # answers None for a missing key never raises.
    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    _MISSING: Any = object()

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if default is Session._MISSING:
            return self.state.pop(key)
        return self.state.pop(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        return self.state.setdefault(key, default)

    def save(self) -> asyncio.Future[None]:
        """The original's name for ``save_state()``."""
        return self.save_state()

    def refresh(self) -> asyncio.Future[None]:
        """Read the state again from the storage (what another request saved since).

        Awaitable: ``await session.refresh()`` before reading the fresh state."""
        previous = self._pending
        storage = self._manager.storage

        async def reload() -> None:
            if previous is not None:
                await asyncio.shield(previous)
            fresh = await storage.load_session(self._record.session_id)
            if fresh is not None:
                self._record.state = fresh.state
                self._record.version = fresh.version
                self._state = None

        self._pending = asyncio.ensure_future(reload())
        return self._pending

    def session_data(self) -> dict[str, Any]:
        """The original's snapshot of the session: identity, expiry, state (a dict) and its
        ``key`` when it has one; ``TotoSession(db, session_data)`` makes it again."""
        record = self._record
        data = {"session_id": record.session_id, "expires": record.expires, "user_id": record.user_id}
        data["state"] = dict(self.state)
        if record.key:
            data["key"] = record.key
        return data

    def get_account(self) -> TotoAccount:
        """The fields of this session's user's account (``toto.original.account``): ``await`` it
        before reading them; setting them and ``save()`` work from sync code too."""
        return TotoAccount(self)

    # -- the original's class helpers (toto.session) ------------------------------------
    @staticmethod
    def generate_id() -> str:
        """A new random session id: ``SESSION_ID_LENGTH`` URL-safe characters."""
        return new_session_id()

    @staticmethod
    def set_serializer(serializer: ModuleType) -> None:
        """Make ``dumps``/``loads`` use ``serializer``: ``json`` (the default), ``msgpack`` or
        ``pickle``. Loading pickle runs code: it is the application's choice for data it
        stored itself (a warning says so); Toto never uses it for session state or for
        anything a client sends."""
        global _data_serializer
        name = getattr(serializer, "__name__", "")
        if name not in ("json", "msgpack", "pickle", "_pickle"):
            raise ValueError(f"TotoSession.set_serializer takes json, msgpack or pickle, not {serializer!r}")
        if "pickle" in name:
            message = (
                "TotoSession.set_serializer(pickle): loading pickle runs code; use it only for data "
                "the application stored itself (Toto never uses it for session state or client data)"
            )
            warnings.warn(message, stacklevel=2)
            log.warning("%s", message)
        _data_serializer = serializer

    @staticmethod
    def dumps(data: Any) -> Any:
        """``data`` serialized by ``set_serializer``'s choice (text for json, else bytes)."""
        if _data_serializer.__name__ == "msgpack":
            return _data_serializer.packb(data, use_bin_type=True)
        return _data_serializer.dumps(data)

    @staticmethod
    def loads(data: Any) -> Any:
        """The value ``dumps`` gave ``data`` for."""
        if _data_serializer.__name__ == "msgpack":
            return _data_serializer.unpackb(data, raw=False)
        return _data_serializer.loads(data)

    def save_state(self) -> asyncio.Future[None]:
        """Persist the state as it is now. Awaitable; the handler awaits it anyway."""
        data = self._manager.encode_state(self.state)
        self._record.state = data
        previous = self._pending
        storage = self._manager.storage

        async def write() -> None:
            if previous is not None:
                await asyncio.shield(previous)
            record = self._record
            # The version check is what serializes writers of other processes and servers.
            written = await storage.save_state(record.session_id, data, record.version)
            if written is None:
                raise session_conflict()
            record.version = written
            if self._lock_entry is not None:
                self._lock_entry.version += 1

        self._pending = asyncio.ensure_future(write())
        return self._pending

    async def flush(self) -> None:
        """Wait for every save_state() write started so far."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def __await__(self) -> Generator[Any, None, Session]:
        """``await handler.create_session(...)``: the session, once it is stored."""
        if self.creation is not None:
            yield from self.creation.__await__()
        return self

    def stored_by(self, creation: Any) -> None:
        """A new session is stored by ``creation`` (a ``toto.dbconnection.Pending``): awaiting
        the session, or flushing it, waits for that write."""
        self.creation = creation
        self._pending = creation.task

    def __repr__(self) -> str:
        return f"<Session {self.session_id[:6]}... user={self.user_id!r}>"


def session_conflict() -> TotoException:
    """1018: another process or server saved this session's state since this request read it."""
    return TotoException(
        ERROR_SESSION_CONFLICT,
        "The session state was changed by a concurrent request and this request's changes were not saved; retry.",
    )


class SessionManager:
    """Creates, loads and renews sessions on one storage."""

    def __init__(
        self, storage: Storage, state_serializer: Serializer, fallbacks: list[Serializer], options: Any
    ) -> None:
        self.storage = storage
        self.state_serializer = state_serializer
        self.fallbacks = [s for s in fallbacks if s is not state_serializer]
        self.ttl = float(options.session_ttl)
        self.renew_within = float(options.session_renew)
        self.anon_ttl = float(options.anon_session_ttl)
        self.anon_renew_within = float(options.anon_session_renew)
        self._locks: dict[str, _LockEntry] = {}

    #: What a session id may look like; a session cache (toto.original.sessioncache) allows longer ones.
    session_id_pattern: re.Pattern[str] = _SESSION_ID

    def encode_state(self, state: dict[str, Any]) -> bytes:
        return self.state_serializer.encode(state)

    def decode_state(self, data: bytes) -> dict[str, Any]:
        if not data:
            return {}
        serializers = (self.state_serializer, *self.fallbacks)
        for serializer in serializers:
            try:
                value = serializer.decode_state(data)
            except Exception:
                continue
            if isinstance(value, dict):
                return value
        # Starting empty would overwrite the stored state at the next save: refuse instead,
        # so installing the serializer that wrote it (a plugin removed, say) brings it back.
        names = ", ".join(s.name for s in serializers)
        log.error(
            "session state (%d bytes) could not be read by any installed state serializer (%s); "
            "was it stored by a plugin that is not installed now (toto-msgpack)?",
            len(data),
            names,
        )
        raise TotoException(ERROR_SERVER, "The session state could not be read.")

    async def create(self, user_id: str | None, with_key: bool) -> Session:
        session = self.new(user_id, with_key)
        await self.storage.store_session(session._record)
        return session

    def new(self, user_id: str | None, with_key: bool) -> Session:
        """A new session, not stored yet (``store_session`` its record)."""
        if user_id is not None:
            user_id = normalize_user_id(user_id)  # the core checks user ids, never the storage
        ttl = self.ttl if user_id is not None else self.anon_ttl
        record = SessionRecord(
            session_id=new_session_id(),
            user_id=user_id,
            expires=time.time() + ttl,
            state=b"",
            key=new_session_key() if with_key else None,
        )
        return Session(self, record, {})

    async def load(self, session_id: str) -> Session | None:
        if not self.session_id_pattern.match(session_id):
            return None
        # Join the session's lock entry before reading, so a save by another request
        # after this read is seen as a version change when this request locks.
        entry = self._locks.get(session_id)
        if entry is None:
            entry = self._locks[session_id] = _LockEntry()
        entry.users += 1
        version = entry.version
        try:
            record = await self.storage.load_session(session_id)
        except BaseException:
            self._leave(session_id, entry)
            raise
        if record is None:
            self._leave(session_id, entry)
            return None
        session = Session(self, record)
        session._lock_entry = entry
        session._loaded_version = version
        return session

    def _leave(self, session_id: str, entry: _LockEntry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._locks.get(session_id) is entry:
            del self._locks[session_id]

    def renewal(self, session: Session) -> float | None:
        """The new expiry if this request should renew the session, else None."""
        anonymous = session.user_id is None
        ttl = self.anon_ttl if anonymous else self.ttl
        renew = self.anon_renew_within if anonymous else self.renew_within
        now = time.time()
        if renew <= 0 or session.expires - now < renew:
            return now + ttl
        return None

    async def renew(self, session: Session) -> None:
        """Push the session's expiry forward when it is due (every transport calls this
        once per request that opened the session); a session not due costs no round trip."""
        new_expiry = self.renewal(session)
        if new_expiry is not None:
            await self.storage.touch_session(session.session_id, new_expiry)
            session._record.expires = new_expiry

    async def lock(self, session: Session) -> None:
        """Serialize requests on one session inside this process, so a read-modify-write
        of its state is never lost. Reloads the state if another request saved it while
        this one waited.

        Between processes and servers the guard is the version that ``save_state``
        checks instead: a request whose session was saved elsewhere after it read it
        fails with 1018 (retry) and saves nothing. A deployment-wide lock would cost
        every request on a session two more round trips, reads included; the check
        costs nothing until a state is saved (see SECURITY.md)."""
        entry = session._lock_entry
        if entry is None or session._locked:
            return
        await entry.lock.acquire()
        session._locked = True
        if entry.version != session._loaded_version:
            fresh = await self.storage.load_session(session.session_id)
            if fresh is not None:
                session._record.state = fresh.state
                session._record.version = fresh.version
                session._state = None

    def release(self, session: Session) -> None:
        """Give up the session's lock (if held) and its lock entry. Idempotent."""
        entry = session._lock_entry
        if entry is None:
            return
        session._lock_entry = None
        if session._locked:
            session._locked = False
            entry.lock.release()
        self._leave(session.session_id, entry)
