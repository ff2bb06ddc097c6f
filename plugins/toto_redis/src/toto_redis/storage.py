"""Accounts and sessions in Redis.

Key layout under the prefix ``P`` (default ``toto:``)::

    P account:<user_id>         hash  p = password hash, f:<name> = JSON of each account field
    P session:<session_id>      hash  e = expires (unix seconds), u = user id, s = state, k = key,
                                      v = version of the state; Redis expires the key itself (PEXPIREAT = e)
    P user_sessions:<user_id>   set   the user's session ids; expires with the user's last session
    P guard:<key>               string  a counter (``increment``) or a mark (``first_seen``), with its TTL

Every write that must be atomic or must touch several keys is one Lua script, so
each storage call is one round trip. The scripts build keys from the prefix and
stored user ids, so they need a single Redis (or a primary with replicas), not a
Redis Cluster.
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
)
from toto_redis.defaults import DEFAULT_WAIT_TIMEOUT

log = logging.getLogger("toto.redis")

#: What a script argument may be.
ScriptArg = bytes | str | int | float

# Push a set's expiry out to ARGV-given milliseconds, never pull it in.
_EXTEND = """
local function extend(key, at, now)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and now + ttl < at) then
    redis.call('PEXPIREAT', key, at)
  end
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

# KEYS[1] session, KEYS[2] new owner's set (ignored when ARGV[6] == '').
# ARGV: 1 session id, 2 user-set key prefix, 3 session key prefix, 4 expires ms, 5 now ms,
#       6 user id ('' = anonymous), 7 expires text, 8 state, 9 signing key ('' = none), 10 version
_STORE_SESSION = (
    _EXTEND
    + """
local old = redis.call('HGET', KEYS[1], 'u')
if old then redis.call('SREM', ARGV[2] .. old, ARGV[1]) end
redis.call('DEL', KEYS[1])
local at, now = tonumber(ARGV[4]), tonumber(ARGV[5])
if at <= now then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[7], 's', ARGV[8], 'v', ARGV[10])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[6]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'k', ARGV[9]) end
redis.call('PEXPIREAT', KEYS[1], at)
if ARGV[6] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[1])
  extend(KEYS[2], at, now)
  -- Sessions that Redis expired stay in the set; sweep them once it grows.
  if redis.call('SCARD', KEYS[2]) > 32 then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
      if redis.call('EXISTS', ARGV[3] .. id) == 0 then redis.call('SREM', KEYS[2], id) end
    end
  end
end
return 1
"""
)

# KEYS[1] session.  ARGV: 1 expires ms, 2 expires text, 3 user-set key prefix, 4 now ms
_TOUCH_SESSION = (
    _EXTEND
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
local user = redis.call('HGET', KEYS[1], 'u')
if user then extend(ARGV[3] .. user, tonumber(ARGV[1]), tonumber(ARGV[4])) end
return 1
"""
)

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

# KEYS[1] session.  ARGV: 1 session id, 2 user-set key prefix
_DELETE_SESSION = """
local user = redis.call('HGET', KEYS[1], 'u')
if user then redis.call('SREM', ARGV[2] .. user, ARGV[1]) end
return redis.call('DEL', KEYS[1])
"""

# KEYS[1] user's set.  ARGV: 1 session key prefix, 2 '1' when ARGV[3] is to be kept, 3 kept id
_DELETE_USER_SESSIONS = """
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not (ARGV[2] == '1' and id == ARGV[3]) then
    removed = removed + redis.call('DEL', ARGV[1] .. id)
    redis.call('SREM', KEYS[1], id)
  end
end
return removed
"""


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
        self._touch_session = client.register_script(_TOUCH_SESSION)
        self._save_state = client.register_script(_SAVE_STATE)
        self._increment = client.register_script(_INCREMENT)
        self._delete_session = client.register_script(_DELETE_SESSION)
        self._delete_user_sessions = client.register_script(_DELETE_USER_SESSIONS)
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
        """``command(client)``, the one place writes go through: with ``wait_replicas``, queued
        in a pipeline with WAIT, so WAIT counts the replicas that have this very write (WAIT
        covers the writes of its own connection)."""
        async with unavailable_on_fault("Redis storage"):
            if not self.wait_replicas:
                return await command(self._client)
            async with self._client.pipeline(transaction=False) as pipe:
                await command(pipe)
                pipe.wait(self.wait_replicas, max(1, int(self.wait_timeout * 1000)))
                result, confirmed = await pipe.execute()
        if int(confirmed) < self.wait_replicas:
            raise StorageUnavailable(
                f"Redis storage: {confirmed} of the {self.wait_replicas} replicas asked for confirmed a write "
                f"within {self.wait_timeout:g} s (redis_wait_replicas); try again shortly."
            )
        return result

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
        keys = [self._session + record.session_id, self._user_sessions + user]
        args: list[ScriptArg] = [
            record.session_id,
            self._user_sessions,
            self._session,
            int(record.expires * 1000),
            int(time.time() * 1000),
            user,
            repr(float(record.expires)),
            record.state,
            record.key or "",
            int(record.version),
        ]
        await self._write(lambda c: self._store_session(keys=keys, args=args, client=c))

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
        now_ms = int(time.time() * 1000)
        args: list[ScriptArg] = [int(expires * 1000), repr(float(expires)), self._user_sessions, now_ms]
        keys = [self._session + session_id]
        await self._write(lambda c: self._touch_session(keys=keys, args=args, client=c))

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
        keys, args = [self._session + session_id], [session_id, self._user_sessions]
        await self._write(lambda c: self._delete_session(keys=keys, args=args, client=c))

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        args = [self._session, "1" if keep is not None else "0", keep or ""]
        keys = [self._user_sessions + user_id]
        await self._write(lambda c: self._delete_user_sessions(keys=keys, args=args, client=c))
