"""RedisStorage passes the contract kit against the machine's Redis, plus what is special to Redis:
native TTLs, one-round-trip deletes, key prefixes that are string prefixes of each other, and a
restart that loses the loaded scripts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio as redis_asyncio
from toto.exceptions import PluginError
from toto.testing import BackendContract, StorageContract
from toto.testing import run_storages as run
from toto.testing import session_record as session
from toto_redis import RedisStorage


class TestRedisStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, redis_url: str, prefix: str) -> Callable[[], RedisStorage]:
        # Not outage tests: a generous timeout, as a loaded CI machine can take seconds to connect.
        return lambda: RedisStorage(url=redis_url, prefix=prefix, timeout=15)


class TestRedisBackend(BackendContract):
    """Prefixes keep apps apart; Redis cut, black-holed and frozen answers 1013 in time."""


def test_db_is_the_redis_asyncio_client(redis_url: str, prefix: str) -> None:
    async def body(s: RedisStorage) -> None:
        assert isinstance(s.db, redis_asyncio.Redis)
        await s.db.set(prefix + "mine", b"1")
        assert await s.db.get(prefix + "mine") == b"1"

    run(body, RedisStorage(redis_url, prefix))


def test_sessions_use_redis_ttl_and_touch_renews_it(redis_url: str, prefix: str) -> None:
    raw = redis.Redis.from_url(redis_url)

    async def body(s: RedisStorage) -> None:
        await s.store_session(session("ttl", user_id="tina", ttl=60))
        ttl = raw.pttl(f"{prefix}session:ttl")
        assert 58_000 < ttl <= 60_000
        assert raw.pttl(f"{prefix}user_sessions:tina") > 58_000
        await s.touch_session("ttl", time.time() + 600)
        assert 598_000 < raw.pttl(f"{prefix}session:ttl") <= 600_000
        assert raw.pttl(f"{prefix}user_sessions:tina") > 598_000, "the user's set lives as long as its last session"

    run(body, RedisStorage(redis_url, prefix))
    raw.close()


def test_expired_sessions_leave_no_keys(redis_url: str, prefix: str) -> None:
    raw = redis.Redis.from_url(redis_url)

    async def body(s: RedisStorage) -> None:
        await s.store_session(session("gone", user_id="gus", ttl=-1))
        assert raw.exists(f"{prefix}session:gone") == 0
        await s.store_session(session("brief", user_id="gus", ttl=0.5))
        await asyncio.sleep(0.8)
        assert raw.exists(f"{prefix}session:brief", f"{prefix}user_sessions:gus") == 0

    run(body, RedisStorage(redis_url, prefix))
    raw.close()


def test_user_set_is_swept_of_expired_sessions(redis_url: str, prefix: str) -> None:
    raw = redis.Redis.from_url(redis_url)

    async def body(s: RedisStorage) -> None:
        for i in range(40):
            await s.store_session(session(f"old{i}", user_id="many", ttl=0.3))
        await asyncio.sleep(0.5)
        await s.store_session(session("fresh", user_id="many"))
        assert raw.smembers(f"{prefix}user_sessions:many") == {b"fresh"}

    run(body, RedisStorage(redis_url, prefix))
    raw.close()


def test_delete_user_sessions_is_one_round_trip(redis_url: str, prefix: str) -> None:
    async def body(s: RedisStorage) -> None:
        for i in range(10):
            await s.store_session(session(f"rt{i}", user_id="roundtrip"))
        commands: list[tuple[Any, ...]] = []
        execute = s.db.execute_command

        async def counting(*args: Any, **kw: Any) -> Any:
            commands.append(args)
            return await execute(*args, **kw)

        s.db.execute_command = counting  # type: ignore[method-assign]
        await s.delete_user_sessions("roundtrip", keep="rt3")
        s.db.execute_command = execute  # type: ignore[method-assign]
        assert len(commands) == 1, commands
        assert [i for i in range(10) if await s.load_session(f"rt{i}") is not None] == [3]

    run(body, RedisStorage(redis_url, prefix))


def test_session_moved_to_another_user_leaves_the_first_users_set(redis_url: str, prefix: str) -> None:
    async def body(s: RedisStorage) -> None:
        await s.store_session(session("moved", user_id="first"))
        await s.store_session(session("moved", user_id="second"))
        await s.delete_user_sessions("first")
        assert await s.load_session("moved") is not None
        await s.delete_user_sessions("second")
        assert await s.load_session("moved") is None

    run(body, RedisStorage(redis_url, prefix))


def test_another_apps_keys_are_never_read_or_deleted(redis_url: str, prefix: str) -> None:
    """Two apps on one Redis, with prefixes where one is a string prefix of the other."""
    mine, theirs = RedisStorage(redis_url, prefix + "app"), RedisStorage(redis_url, prefix + "app2")

    async def body(a: RedisStorage, b: RedisStorage) -> None:
        await b.create_account("shared", "theirs", {"app": 2})
        await b.store_session(session("s-theirs", user_id="shared"))
        await b.store_session(session("same-id", user_id="shared", state=b"theirs"))

        assert await a.get_account("shared") is None
        assert await a.load_session("s-theirs") is None
        await a.create_account("shared", "mine", {"app": 1})
        await a.store_session(session("same-id", user_id="shared", state=b"mine"))
        await a.delete_user_sessions("shared")
        await a.delete_session("s-theirs")
        await a.update_account("shared", password_hash="changed")

        account = await b.get_account("shared")
        assert account is not None and (account.password_hash, account.fields) == ("theirs", {"app": 2})
        assert await b.load_session("s-theirs") is not None
        theirs_same = await b.load_session("same-id")
        assert theirs_same is not None and theirs_same.state == b"theirs"
        assert await a.load_session("same-id") is None

    run(body, mine, theirs)

    raw = redis.Redis.from_url(redis_url)
    keys = {key.decode() for key in raw.scan_iter(match=prefix + "*")}
    raw.close()
    assert all(key.startswith((prefix + "app:", prefix + "app2:")) for key in keys), keys


def test_update_of_a_missing_account_creates_nothing(redis_url: str, prefix: str) -> None:
    async def body(s: RedisStorage) -> None:
        await s.update_account("ghost", password_hash="h", fields={"a": 1})
        assert await s.get_account("ghost") is None

    run(body, RedisStorage(redis_url, prefix))


def test_options_pick_url_prefix_and_refuse_a_foreign_url(redis_url: str) -> None:
    class Options:
        database_url = redis_url
        redis_prefix = "myapp"
        redis_timeout = 1.5

    storage = RedisStorage.from_options(Options())
    assert (storage.url, storage.prefix, storage.timeout) == (redis_url, "myapp:", 1.5)

    Options.database_url = "postgresql://localhost/test"
    with pytest.raises(PluginError, match="needs a Redis URL"):
        RedisStorage.from_options(Options())


def test_storage_recovers_after_a_redis_restart(private_redis) -> None:
    async def body(s: RedisStorage) -> None:
        await s.create_account("before", "h", {})
        private_redis.restart()  # a restart without persistence: data and loaded scripts are gone
        assert await s.get_account("before") is None
        await s.create_account("after", "h", {})  # the script is loaded again by itself
        with pytest.raises(Exception, match="after"):
            await s.create_account("after", "h", {})

    run(body, RedisStorage(private_redis.url, "restart:"))
