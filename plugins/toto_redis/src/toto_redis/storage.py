"""Accounts and sessions in Redis.

Key layout under the prefix ``P`` (default ``toto:``)::

    P account:<user_id>         hash  p = password hash, f:<name> = JSON of each account field
    P session:<session_id>      hash  e = expires (unix seconds), u = user id, s = state, k = key,
                                      v = version of the state; Redis expires the key itself (PEXPIREAT = e)
    P user_sessions:<user_id>   set   the user's session ids; expires with the user's last session
    P guard:<key>               string  a counter (``increment``) or a mark (``first_seen``), with its TTL

Every Lua script touches the one key it is given, so the same code runs on one Redis,
a Sentinel's primary and a Redis Cluster, where a session and its user's set live in
different slots (no key must live beside another: no hash tags). What spans two keys is
two steps, ordered so that no state between them can be misused:

- a session is written first and added to its user's set second: a session the set does
  not name yet is one whose id nobody has been given (``store_session`` has not
  returned), and the set never names a session that was not written;
- a session is deleted first and taken out of the set second: a set that names a gone
  session costs nothing (it is skipped, and swept once the set grows);
- ``delete_user_sessions`` deletes the sessions the set named when it read it; a session
  stored concurrently is either among them or comes after the deletion, as it would
  with one atomic script.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from toto.exceptions import PluginError, StorageUnavailable
from toto.options import option_value
from toto.storage import AccountRecord, DuplicateAccount, SessionRecord, Storage
from toto.storage.batching import ReadBatcher

from toto_redis.connection import (
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    EXAMPLES,
    UNREACHABLE_ERRORS,
    close_client,
    is_redis_url,
    make_client,
    normalize_prefix,
    redact,
    unavailable_on_fault,
    url_kind,
)
from toto_redis.defaults import DEFAULT_WAIT_TIMEOUT

log = logging.getLogger("toto.redis")

#: What a script argument may be.
ScriptArg = bytes | str | int | float

# KEYS[1] a set.  ARGV: 1 when (ms) it must live until, 2 now (ms).  Push its expiry out, never pull it in.
_EXTEND = """
local ttl = redis.call('PTTL', KEYS[1])
local at, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if ttl == -1 or (ttl >= 0 and now + ttl < at) then
  redis.call('PEXPIREAT', KEYS[1], at)
end
"""

# KEYS[1] account.  ARGV: field/value pairs.  Creates only when absent.
_CREATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] account.  ARGV: field/value pairs.  Updates only when present.
_UPDATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] session.  ARGV: 1 expires ms, 2 now ms, 3 user id ('' = anonymous), 4 expires text,
# 5 state, 6 signing key ('' = none), 7 version.  Replaces the session whole; answers its
# previous owner (false when none).
_STORE_SESSION = """
local old = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then return old end
redis.call('HSET', KEYS[1], 'e', ARGV[4], 's', ARGV[5], 'v', ARGV[7])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[3]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'k', ARGV[6]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return old
"""

# KEYS[1] the user's set.  ARGV: 1 expires ms, 2 now ms, 3 session id.  Answers the set's size.
_INDEX_SESSION = (
    """
redis.call('SADD', KEYS[1], ARGV[3])
"""
    + _EXTEND
    + """
return redis.call('SCARD', KEYS[1])
"""
)

# KEYS[1] session.  ARGV: 1 expires ms, 2 expires text.  Answers its owner (false: anonymous or gone).
_TOUCH_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return redis.call('HGET', KEYS[1], 'u')
"""

# KEYS[1] session.  ARGV: 1 state, 2 the version it must have ('' = any).  Never creates a session.
_SAVE_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= v then return -1 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'v', v + 1)
return v + 1
"""

# KEYS[1] counter.  ARGV: 1 amount, 2 ttl ms.  The first increment of a window sets its expiry.
_INCREMENT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# KEYS[1] session.  Deletes it; answers its owner (false: anonymous or gone).
_DELETE_SESSION = """
local user = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
return user
"""

#: A user's set is swept of the ids of sessions Redis expired once it holds more than this.
SWEEP_ABOVE = 32


def _encode_field(value: Any) -> str:
    # The core has checked that account fields are JSON data (toto.storage.checks).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class RedisStorage(Storage):
    """Accounts and sessions on ``redis.asyncio``; ``db`` is the client.

    ``prefix`` namespaces every key, so several apps (or test runs) can share one
    Redis database without reading or deleting each other's keys.

    ``wait_replicas`` (option ``redis_wait_replicas``) narrows what a failover can lose:
    each write is followed by ``WAIT wait_replicas timeout`` on its connection, and a write
    that fewer replicas confirm within ``wait_timeout`` seconds fails with 1013 instead of
    being acknowledged. Redis replicates asynchronously, so without it a write the primary
    acknowledged and had not yet sent to a replica is lost when that replica is promoted.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        wait_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        self.url = url
        self.prefix = normalize_prefix(prefix)
        self.timeout = timeout
        self.wait_replicas = int(wait_replicas)
        self.wait_timeout = float(wait_timeout)
        if self.wait_replicas and url_kind(url) == "cluster":
            raise PluginError(
                "redis_wait_replicas is not available on a Redis Cluster (WAIT counts one connection's writes, "
                "and a Cluster client spreads them over connections to many nodes); leave it at 0"
            )
        if self.wait_replicas < 0 or self.wait_timeout <= 0:
            raise PluginError(
                f"redis_wait_replicas must be 0 or more and redis_wait_timeout more than 0 seconds, "
                f"got {wait_replicas!r} and {wait_timeout!r}"
            )
        #: The client (``make_client``): a ``redis.asyncio.Redis``, or a ``RedisCluster``.
        self.db: Any = None
        self._account = self.prefix + "account:"
        self._session = self.prefix + "session:"
        self._user_sessions = self.prefix + "user_sessions:"
        self._guard = self.prefix + "guard:"

    @classmethod
    def from_options(cls, options: Any) -> RedisStorage:
        url = option_value(options, "database_url", DEFAULT_URL)
        if not is_redis_url(url):
            raise PluginError(
                f"database 'redis' needs a Redis URL, got database_url={redact(str(url))!r}; use {EXAMPLES}"
            )
        return cls(
            url=url,
            prefix=option_value(options, "redis_prefix", DEFAULT_PREFIX),
            timeout=float(option_value(options, "redis_timeout", DEFAULT_TIMEOUT)),
            wait_replicas=int(option_value(options, "redis_wait_replicas", 0) or 0),
            wait_timeout=float(option_value(options, "redis_wait_timeout", DEFAULT_WAIT_TIMEOUT)),
        )

    async def open(self) -> None:
        self.db = client = make_client(self.url, self.timeout)
        self._session_reads: ReadBatcher[str, dict[bytes, bytes]] = ReadBatcher(self._read_sessions)
        self._create_account = client.register_script(_CREATE_ACCOUNT)
        self._update_account = client.register_script(_UPDATE_ACCOUNT)
        self._store_session = client.register_script(_STORE_SESSION)
        self._index_session = client.register_script(_INDEX_SESSION)
        self._extend = client.register_script(_EXTEND)
        self._touch_session = client.register_script(_TOUCH_SESSION)
        self._save_state = client.register_script(_SAVE_STATE)
        self._increment = client.register_script(_INCREMENT)
        self._delete_session = client.register_script(_DELETE_SESSION)
        if not await self.ping():
            # Serve anyway: requests answer 1013 until Redis is reachable, then recover.
            log.warning(
                "redis storage: %s does not answer yet; requests will fail with 1013 until it does",
                redact(self.url),
            )

    async def close(self) -> None:
        if self.db is not None:
            await close_client(self.db)

    @property
    def _client(self) -> Any:
        if self.db is None:
            raise RuntimeError("RedisStorage.open() must be awaited before use")
        return self.db

    async def _write(self, command: Callable[[Any], Awaitable[Any]]) -> Any:
        """``await command(client)``: one write, the way every write goes (see ``_write_all``)."""
        if not self.wait_replicas:
            async with unavailable_on_fault("Redis storage"):
                return await command(self._client)
        return (await self._write_all(command))[0]

    async def _write_all(self, queue: Callable[[Any], Awaitable[Any]]) -> list[Any]:
        """Writes that ``await queue(pipeline)`` puts on one pipeline: one round trip (on a
        Cluster, one per node). With ``wait_replicas``, WAIT follows them on the same
        connection, so it counts the replicas that have these very writes (WAIT covers the
        writes of its own connection), and a shortfall answers 1013."""
        async with unavailable_on_fault("Redis storage"):
            async with self._client.pipeline(transaction=False) as pipe:
                await queue(pipe)
                if self.wait_replicas:
                    pipe.wait(self.wait_replicas, max(1, int(self.wait_timeout * 1000)))
                results = list(await pipe.execute())
        if self.wait_replicas:
            confirmed = int(results.pop())
            if confirmed < self.wait_replicas:
                raise StorageUnavailable(
                    f"Redis storage: {confirmed} of the {self.wait_replicas} replicas asked for confirmed a write "
                    f"within {self.wait_timeout:g} s (redis_wait_replicas); try again shortly."
                )
        return results

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except UNREACHABLE_ERRORS:
            return False

    async def create_account(self, user_id: str, password_hash: str, fields: dict[str, Any]) -> None:
        args = ["p", password_hash]
        for name, value in fields.items():
            args += ["f:" + name, _encode_field(value)]
        keys = [self._account + user_id]
        created = await self._write(lambda c: self._create_account(keys=keys, args=args, client=c))
        if not created:
            raise DuplicateAccount(user_id)

    async def get_account(self, user_id: str) -> AccountRecord | None:
        async with unavailable_on_fault("Redis storage"):
            stored = cast(dict[bytes, bytes], await self._client.hgetall(self._account + user_id))
        if not stored or b"p" not in stored:
            return None
        fields = {key[2:].decode("utf-8"): json.loads(value) for key, value in stored.items() if key.startswith(b"f:")}
        return AccountRecord(user_id, stored[b"p"].decode("utf-8"), fields)

    async def update_account(
        self, user_id: str, password_hash: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        args: list[str] = []
        if password_hash is not None:
            args += ["p", password_hash]
        for name, value in (fields or {}).items():
            args += ["f:" + name, _encode_field(value)]
        if not args:
            return
        keys = [self._account + user_id]
        await self._write(lambda c: self._update_account(keys=keys, args=args, client=c))

    async def store_session(self, record: SessionRecord) -> None:
        user = record.user_id if record.user_id is not None else ""
        expires_ms, now_ms = int(record.expires * 1000), int(time.time() * 1000)
        args: list[ScriptArg] = [
            expires_ms,
            now_ms,
            user,
            repr(float(record.expires)),
            record.state,
            record.key or "",
            int(record.version),
        ]
        session = [self._session + record.session_id]
        old = await self._write(lambda c: self._store_session(keys=session, args=args, client=c))
        if old is not None and _text(old) != user:
            await self._write(lambda c: c.srem(self._user_sessions + _text(old), record.session_id))
        if user and expires_ms > now_ms:
            index = [self._user_sessions + user]
            size = await self._write(
                lambda c: self._index_session(keys=index, args=[expires_ms, now_ms, record.session_id], client=c)
            )
            if int(size) > SWEEP_ABOVE:
                await self._sweep(index[0])

    async def _sweep(self, index: str) -> None:
        """Take the ids of sessions Redis expired out of a user's set (only ids whose session
        is gone: a session is written before its id enters the set)."""
        async with unavailable_on_fault("Redis storage"):
            ids = sorted(await self._client.smembers(index))
            pipe = self._client.pipeline(transaction=False)
            for session_id in ids:
                pipe.exists(self._session + _text(session_id))
            present = await pipe.execute()
        gone = [session_id for session_id, exists in zip(ids, present) if not exists]
        if gone:
            await self._write(lambda c: c.srem(index, *gone))

    async def _read_sessions(self, keys: Sequence[str]) -> list[dict[bytes, bytes]]:
        """The session hashes of one event-loop turn, in one pipeline (see ``ReadBatcher``)."""
        assert self.db is not None
        if len(keys) == 1:
            return [cast(dict[bytes, bytes], await self.db.hgetall(keys[0]))]
        pipe = self.db.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return cast(list[dict[bytes, bytes]], await pipe.execute())

    async def load_session(self, session_id: str) -> SessionRecord | None:
        async with unavailable_on_fault("Redis storage"):
            stored = await self._session_reads.read(self._session + session_id)
        if not stored or b"e" not in stored:
            return None
        expires = float(stored[b"e"])
        if expires <= time.time():  # Redis's own expiry runs in milliseconds; be exact about the edge
            return None
        user = stored.get(b"u")
        key = stored.get(b"k")
        return SessionRecord(
            session_id=session_id,
            user_id=user.decode("utf-8") if user is not None else None,
            expires=expires,
            state=stored.get(b"s", b""),
            key=key.decode("utf-8") if key else None,
            version=int(stored.get(b"v", 0)),
        )

    async def touch_session(self, session_id: str, expires: float) -> None:
        expires_ms = int(expires * 1000)
        args: list[ScriptArg] = [expires_ms, repr(float(expires))]
        session = [self._session + session_id]
        user = await self._write(lambda c: self._touch_session(keys=session, args=args, client=c))
        if user:
            # The user's set lives as long as its last session, so a logout everywhere finds it.
            index = [self._user_sessions + _text(user)]
            now_ms = int(time.time() * 1000)
            await self._write(lambda c: self._extend(keys=index, args=[expires_ms, now_ms], client=c))

    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        expected = "" if version is None else int(version)
        keys = [self._session + session_id]
        written = int(await self._write(lambda c: self._save_state(keys=keys, args=[state, expected], client=c)))
        return None if written < 0 else written

    async def increment(self, key: str, ttl: float, amount: int = 1) -> int:
        args = [int(amount), max(1, int(ttl * 1000))]
        keys = [self._guard + key]
        return int(await self._write(lambda c: self._increment(keys=keys, args=args, client=c)))

    async def first_seen(self, key: str, ttl: float) -> bool:
        ttl_ms = max(1, int(ttl * 1000))
        return bool(await self._write(lambda c: c.set(self._guard + key, b"1", nx=True, px=ttl_ms)))

    async def delete_session(self, session_id: str) -> None:
        session = [self._session + session_id]
        user = await self._write(lambda c: self._delete_session(keys=session, client=c))
        if user:
            await self._write(lambda c: c.srem(self._user_sessions + _text(user), session_id))

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        index = self._user_sessions + user_id
        async with unavailable_on_fault("Redis storage"):
            ids = [_text(i) for i in await self._client.smembers(index)]
        ending = sorted(i for i in ids if i != keep)
        if not ending:
            return

        async def end_them(pipe: Any) -> None:
            for session_id in ending:
                pipe.delete(self._session + session_id)
            pipe.srem(index, *ending)

        await self._write_all(end_them)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
