"""Accounts and sessions in MongoDB, on pymongo's native asyncio API (``AsyncMongoClient``).

Three collections in the database named by the URL, under a prefix ``P`` (default ``toto_``)::

    P accounts   {user_id: <lower-cased id>, password_hash, fields: {...}}
                 unique index on user_id: of two creates racing on one id, exactly one wins
    P sessions   {_id: <session id>, user_id, expires: <unix seconds>, expires_at: <date>,
                  state: <bytes>, key, version: <writes of state>}
                 TTL index on expires_at (MongoDB deletes expired sessions by itself),
                 index on user_id (logging a user out everywhere)
    P guards     {_id: <key>, n: <counter>, expires, expires_at}: counters and "seen once"
                 marks (``increment``, ``first_seen``), TTL index on expires_at

``expires`` is the exact float the protocol answers; ``expires_at`` is the same
instant as a BSON date for the TTL index. MongoDB's TTL monitor runs about once a
minute, so every read also filters on ``expires``: an expired session is never
returned, whether or not it has been deleted yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bson.binary import Binary
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)
from toto.exceptions import PluginError, StorageUnavailable
from toto.options import option_value
from toto.storage import AccountRecord, DuplicateAccount, SessionRecord, Storage
from toto.storage.batching import ReadBatcher
from toto.urls import redact_url

from toto_mongo.defaults import DEFAULT_DATABASE, DEFAULT_PREFIX, DEFAULT_TIMEOUT, DEFAULT_URL

log = logging.getLogger("toto.mongo")


#: Server error codes that mean "this server cannot serve right now" (shutting down,
#: stepped down, not primary) rather than "this request is wrong".
_TRANSIENT_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, (ConnectionFailure, ExecutionTimeout, WTimeoutError, OSError, asyncio.TimeoutError)):
        return True
    if isinstance(error, OperationFailure) and error.code in _TRANSIENT_CODES:
        return True
    return isinstance(error, PyMongoError) and error.timeout


def _unavailable(error: BaseException) -> StorageUnavailable:
    return StorageUnavailable(f"MongoDB storage is unavailable ({type(error).__name__}); try again shortly.")


def _reason(error: PyMongoError) -> str:
    """The server's own message, without the reply document pymongo appends."""
    if isinstance(error, OperationFailure) and error.details:
        return f"{error.details.get('codeName', error.code)}: {error.details.get('errmsg', '')}"
    return str(error)


def is_mongo_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in ("mongodb", "mongodb+srv")


# Account field names (and the keys of dicts inside their values) may hold any text, but
# MongoDB reads "." as a path and a leading "$" as an operator in updates. They are stored
# escaped, and unescaped on the way out.
_ESCAPES = {"%": "%25", ".": "%2E", "$": "%24", "\x00": "%00"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}


def _escape_key(key: str) -> str:
    if not any(c in key for c in _ESCAPES):
        return key
    return "".join(_ESCAPES.get(c, c) for c in key)


def _unescape_key(key: str) -> str:
    if "%" not in key:
        return key
    out, i = [], 0
    while i < len(key):
        token = key[i : i + 3]
        if token in _UNESCAPES:
            out.append(_UNESCAPES[token])
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def _escape(value: Any) -> Any:
    if isinstance(value, dict):
        return {_escape_key(str(k)): _escape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


def _unescape(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unescape_key(k): _unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


def _as_date(expires: float) -> datetime.datetime:
    # BSON dates hold milliseconds; round up so the TTL monitor never deletes early.
    return datetime.datetime.fromtimestamp(math.ceil(expires * 1000) / 1000, datetime.timezone.utc)


class MongoStorage(Storage):
    """Accounts and sessions in MongoDB; ``db`` is the ``AsyncDatabase``.

    ``timeout`` bounds server selection, connecting and every operation, so a
    MongoDB that is down or silent turns into ``StorageUnavailable`` (1013/503) in
    about that time; the client reconnects by itself when the server is back.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        database: str | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.database = database
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: AsyncDatabase[dict[str, Any]] | None = None
        self._indexed = False
        self._index_attempt: asyncio.Future[None] | None = None

    @classmethod
    def from_options(cls, options: Any) -> MongoStorage:
        url = option_value(options, "database_url", DEFAULT_URL)
        if not is_mongo_url(url):
            raise PluginError(
                f"database 'mongodb' needs a MongoDB URL, got database_url={url!r}; "
                "use --database_url=mongodb://127.0.0.1:27017/toto"
            )
        return cls(
            url=url,
            prefix=option_value(options, "mongo_collection_prefix", DEFAULT_PREFIX),
            timeout=float(option_value(options, "mongo_timeout", DEFAULT_TIMEOUT)),
        )

    # -- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        ms = int(self.timeout * 1000)
        try:
            self.client = AsyncMongoClient(
                self.url,
                appname="toto",
                tz_aware=True,
                timeoutMS=ms,
                serverSelectionTimeoutMS=ms,
                connectTimeoutMS=ms,
            )
            self.db = self.client.get_default_database(self.database or DEFAULT_DATABASE)
        except (InvalidURI, ConfigurationError, ValueError) as error:
            raise PluginError(
                f"invalid MongoDB URL {redact_url(self.url)!r}: {error}; use mongodb://host:27017/database"
            ) from error
        self._accounts: AsyncCollection[dict[str, Any]] = self.db[self.prefix + "accounts"]
        self._sessions: AsyncCollection[dict[str, Any]] = self.db[self.prefix + "sessions"]
        self._guards: AsyncCollection[dict[str, Any]] = self.db[self.prefix + "guards"]
        self._session_reads: ReadBatcher[str, dict[str, Any] | None] = ReadBatcher(self._read_sessions)
        try:
            await self._ensure_indexes()
        except StorageUnavailable:
            # Serve anyway: requests answer 1013 until MongoDB answers, then the
            # indexes are made before the first storage call goes through.
            log.warning(
                "mongodb storage: %s does not answer yet; requests will fail with 1013 until it does",
                redact_url(self.url),
            )
        except PyMongoError as error:  # refused credentials, a conflicting index, duplicate user ids
            raise PluginError(
                f"mongodb storage: cannot prepare {self.prefix}accounts and {self.prefix}sessions "
                f"in {redact_url(self.url)}: {_reason(error)}"
            ) from error

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Make sure the indexes exist, then run one storage call; "cannot reach MongoDB"
        becomes ``StorageUnavailable`` (answered 1013/503)."""
        if not self._indexed:
            await self._ensure_indexes()
        try:
            yield
        except (PyMongoError, OSError, asyncio.TimeoutError) as error:
            if not _unreachable(error):
                raise
            # The server may come back empty (a new node, a restore): make the indexes again.
            self._indexed = False
            raise _unavailable(error) from error

    async def _ensure_indexes(self) -> None:
        """Make the indexes unless they are made. Callers that arrive while an attempt is
        under way share it instead of queueing, so a MongoDB that is down costs each
        request one ``timeout``, however many requests wait."""
        if self._indexed:
            return
        attempt = self._index_attempt
        if attempt is None or attempt.done():
            attempt = self._index_attempt = asyncio.ensure_future(self._create_indexes())
            # A caller that gave up must not leave the failure unretrieved.
            attempt.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(attempt)

    async def _create_indexes(self) -> None:
        try:
            await self._accounts.create_indexes(
                [IndexModel([("user_id", ASCENDING)], unique=True, name="user_id_unique")]
            )
            await self._sessions.create_indexes(
                [
                    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
                    IndexModel([("user_id", ASCENDING)], name="user_id"),
                ]
            )
            await self._guards.create_indexes(
                [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl")]
            )
        except (PyMongoError, OSError, asyncio.TimeoutError) as error:
            if _unreachable(error):
                raise _unavailable(error) from error
            raise
        self._indexed = True

    async def ping(self) -> bool:
        if self.db is None:
            return False
        try:
            await self.db.command("ping")
        except PyMongoError:
            return False
        return True

    # -- accounts -----------------------------------------------------------------------
    async def create_account(self, user_id: str, password_hash: str, fields: dict[str, Any]) -> None:
        document = {"user_id": user_id, "password_hash": password_hash, "fields": _escape(fields)}
        try:
            async with self._call():
                await self._accounts.insert_one(document)
        except DuplicateKeyError:
            raise DuplicateAccount(user_id) from None

    async def get_account(self, user_id: str) -> AccountRecord | None:
        async with self._call():
            document = await self._accounts.find_one({"user_id": user_id})
        if document is None:
            return None
        return AccountRecord(document["user_id"], document["password_hash"], _unescape(document.get("fields") or {}))

    async def update_account(
        self, user_id: str, password_hash: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if password_hash is not None:
            changes["password_hash"] = password_hash
        for name, value in (fields or {}).items():
            changes["fields." + _escape_key(str(name))] = _escape(value)
        if not changes:
            return
        async with self._call():
            await self._accounts.update_one({"user_id": user_id}, {"$set": changes})

    # -- sessions -----------------------------------------------------------------------
    async def store_session(self, record: SessionRecord) -> None:
        async with self._call():
            if record.expires <= time.time():
                await self._sessions.delete_one({"_id": record.session_id})
                return
            document = {
                "_id": record.session_id,
                "user_id": record.user_id,
                "expires": float(record.expires),
                "expires_at": _as_date(record.expires),
                "state": Binary(record.state),
                "key": record.key,
                "version": int(record.version),
            }
            await self._sessions.replace_one({"_id": record.session_id}, document, upsert=True)

    async def _read_sessions(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The session documents of one event-loop turn, in one ``$in`` query (see ``ReadBatcher``)."""
        live = {"$gt": time.time()}  # reads never return an expired session, before the TTL monitor runs too
        if len(ids) == 1:
            return [await self._sessions.find_one({"_id": ids[0], "expires": live})]
        documents = await self._sessions.find({"_id": {"$in": list(ids)}, "expires": live}).to_list(None)
        by_id = {document["_id"]: document for document in documents}
        return [by_id.get(session_id) for session_id in ids]

    async def load_session(self, session_id: str) -> SessionRecord | None:
        async with self._call():
            document = await self._session_reads.read(session_id)
        if document is None:
            return None
        return SessionRecord(
            session_id=document["_id"],
            user_id=document.get("user_id"),
            expires=float(document["expires"]),
            state=bytes(document.get("state") or b""),
            key=document.get("key"),
            version=int(document.get("version") or 0),
        )

    async def touch_session(self, session_id: str, expires: float) -> None:
        # Only a live session slides; an expired one stays gone.
        async with self._call():
            await self._sessions.update_one(
                {"_id": session_id, "expires": {"$gt": time.time()}},
                {"$set": {"expires": float(expires), "expires_at": _as_date(expires)}},
            )

    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        query: dict[str, Any] = {"_id": session_id, "expires": {"$gt": time.time()}}
        if version is not None:
            # Sessions stored before versions existed have none: that is version 0.
            query["version"] = int(version) if version else {"$in": [0, None]}
        async with self._call():
            document = await self._sessions.find_one_and_update(
                query,
                {"$set": {"state": Binary(state)}, "$inc": {"version": 1}},
                projection={"version": True},
                return_document=ReturnDocument.AFTER,
            )
        return None if document is None else int(document["version"])

    # -- deployment guards ------------------------------------------------------------
    async def increment(self, key: str, ttl: float, amount: int = 1) -> int:
        now = time.time()
        async with self._call():
            while True:
                document = await self._guards.find_one_and_update(
                    {"_id": key, "expires": {"$gt": now}},
                    {"$inc": {"n": int(amount)}},
                    return_document=ReturnDocument.AFTER,
                )
                if document is not None:
                    return int(document["n"])
                # Absent or expired: start a window. Of two that race, one inserts and the
                # other meets the duplicate key and increments the new window instead.
                try:
                    document = await self._guards.find_one_and_update(
                        {"_id": key, "expires": {"$lte": now}},
                        {"$set": {"n": int(amount), "expires": now + ttl, "expires_at": _as_date(now + ttl)}},
                        upsert=True,
                        return_document=ReturnDocument.AFTER,
                    )
                except DuplicateKeyError:
                    continue
                assert document is not None
                return int(document["n"])

    async def first_seen(self, key: str, ttl: float) -> bool:
        now = time.time()
        mark = {"expires": now + ttl, "expires_at": _as_date(now + ttl)}
        async with self._call():
            try:
                await self._guards.insert_one({"_id": key, "n": 1, **mark})
                return True
            except DuplicateKeyError:
                # Seen before: a new mark only when the old one has expired (the TTL monitor lags).
                result = await self._guards.update_one({"_id": key, "expires": {"$lte": now}}, {"$set": mark})
                return bool(result.modified_count)

    async def delete_session(self, session_id: str) -> None:
        async with self._call():
            await self._sessions.delete_one({"_id": session_id})

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        query: dict[str, Any] = {"user_id": user_id}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        async with self._call():
            await self._sessions.delete_many(query)

    async def purge_expired(self) -> int:
        """Delete expired sessions now; MongoDB's TTL monitor does the same about once a minute."""
        now = time.time()
        async with self._call():
            result = await self._sessions.delete_many({"expires_at": {"$lte": _as_date(now)}, "expires": {"$lte": now}})
            await self._guards.delete_many({"expires": {"$lte": now}})
        return int(result.deleted_count)
