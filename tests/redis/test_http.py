"""Real servers over HTTP on Redis storage and the Redis event bus: the deployment contract, plus Redis's
own key layout and TTLs, storage and bus combined freely, and a bus that lost Redis resubscribing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWaiting
from pathlib import Path
from typing import Any

import pytest
import redis
from toto.client import TotoClient, TotoClientError
from toto.testing import DeploymentContract
from toto.testing import unique_user as user
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST
from tests.redis.conftest import proxied_url

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class TestRedisDeployment(DeploymentContract):
    """A complete server, two servers sharing sessions, racing creates, no lost update, prefixes,
    the core's checks, and a Redis cut, black-holed and frozen answered with 1013/503 in time."""


def on_redis(redis_url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"database": "redis", "database_url": redis_url, "redis_prefix": prefix, **extra}


def test_accounts_and_sessions_are_redis_hashes_that_expire_by_themselves(
    start_server, redis_url: str, prefix: str
) -> None:
    server = start_server(**on_redis(redis_url, prefix))
    client = server.client()
    name = user()
    client.create(name, "pw-1", nickname="Zoë")
    assert client.call("db")["type"] == "Redis", "handler.connection.db is the redis.asyncio client"
    raw = redis.Redis.from_url(redis_url)
    try:
        account = raw.hgetall(f"{prefix}account:{name}")
        assert b"p" in account and account[b"f:nickname"] == '"Zoë"'.encode()
        session_key = f"{prefix}session:{client.session['session_id']}"
        assert 0 < raw.pttl(session_key), "sessions expire by Redis's own TTL"
        assert raw.smembers(f"{prefix}user_sessions:{name}") == {client.session["session_id"].encode()}
    finally:
        raw.close()


def wait_for_event(waiter: TotoClient, sender: TotoClient, name: str, args: Any, broadcast: bool = True) -> Any:
    """Long-poll ``events.wait`` on one server while sending the event through another, until it answers."""
    with ThreadPoolExecutor(1) as pool:
        answer: Future[Any] = pool.submit(waiter.call, "events.wait", {"name": name, "timeout": 15})
        deadline = time.monotonic() + 15
        while not answer.done() and time.monotonic() < deadline:
            sender.call("events.send", {"name": name, "args": args, "broadcast": broadcast})
            try:
                return answer.result(timeout=0.5)
            except StillWaiting:  # not the builtin TimeoutError before Python 3.11
                continue
        return answer.result(timeout=1)


def database_options(
    database: str, redis_url: str, prefix: str, tmp_path: Path, sql_prefix: str = ""
) -> dict[str, Any]:
    if database == "redis":
        return on_redis(redis_url, prefix)
    if database == "sqlite":
        return {"database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    if database == "postgres":
        # Tables of this test only (dropped after it): a fixed prefix would meet tables that
        # another checkout's toto-sql made in another schema version.
        return {"database": "postgres", "database_url": POSTGRES_URL, "sql_table_prefix": sql_prefix}
    return {"database": database}


@pytest.fixture
def sql_prefix() -> Iterator[str]:
    """A table prefix of one test; its PostgreSQL tables are dropped after the servers stop
    (this fixture comes first, so it is torn down last)."""
    prefix = f"tr{uuid.uuid4().hex[:8]}_"
    yield prefix
    from tests.sql.conftest import drop_tables

    drop_tables(POSTGRES_URL, prefix)


@pytest.mark.parametrize("database", ["redis", "memory", "sqlite", "postgres"])
def test_an_event_sent_through_one_server_answers_a_long_poll_on_another(
    sql_prefix: str, start_server, redis_url: str, prefix: str, tmp_path: Path, database: str
) -> None:
    bus = {"event_bus": "redis", "event_url": redis_url, "redis_event_prefix": prefix + "events"}
    options = {**database_options(database, redis_url, prefix, tmp_path, sql_prefix), **bus}
    a, b = start_server(**options), start_server(**options)
    args = {"text": "héllo", "n": [1, 2.5, None]}
    assert wait_for_event(b.client(), a.client(), "ping", args) == {"event": "ping", "args": args}
    assert wait_for_event(a.client(), b.client(), "pong", [1]) == {"event": "pong", "args": [1]}


def test_unicast_events_reach_one_server(start_server, redis_url: str, prefix: str) -> None:
    bus = {"event_bus": "redis", "event_url": redis_url, "redis_event_prefix": prefix + "events"}
    a, b = start_server(database="memory", **bus), start_server(database="memory", **bus)
    with ThreadPoolExecutor(2) as pool:
        polls = [pool.submit(s.client().call, "events.wait", {"name": "solo", "timeout": 6}) for s in (a, b)]
        time.sleep(1.5)  # both long-polls are waiting
        a.client().call("events.send", {"name": "solo", "args": "x", "broadcast": False})
        answers = [poll.result(timeout=15) for poll in polls]
    assert sorted(answers, key=str) == [None, {"event": "solo", "args": "x"}], answers


def test_a_bus_that_lost_redis_resubscribes_and_says_so(start_server, proxy: Any, redis_url: str, prefix: str) -> None:
    through_proxy = {
        "database": "memory",
        "event_bus": "redis",
        "event_url": proxied_url(proxy),
        "redis_event_prefix": prefix + "events",
        "redis_timeout": 1.0,
    }
    direct = {**through_proxy, "event_url": redis_url}
    cut_off, steady = start_server(**through_proxy), start_server(**direct)
    assert wait_for_event(cut_off.client(), steady.client(), "e1", 1) == {"event": "e1", "args": 1}

    proxy.cut()
    with pytest.raises(TotoClientError) as caught:
        cut_off.client().call("events.send", {"name": "lost", "args": 0})
    assert caught.value.code == 1013
    time.sleep(1.0)
    proxy.restore()

    deadline = time.monotonic() + 10
    while "resubscribed" not in cut_off.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "resubscribed" in cut_off.output(), cut_off.output()
    assert "lost the subscription" in cut_off.output()
    assert wait_for_event(cut_off.client(), steady.client(), "e2", 2) == {"event": "e2", "args": 2}
    assert wait_for_event(steady.client(), cut_off.client(), "e3", 3) == {"event": "e3", "args": 3}


def test_keys_of_another_app_are_never_read_or_deleted(start_server, redis_url: str, prefix: str) -> None:
    other_prefix = prefix + "other-app:"
    name = user()
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset(f"{other_prefix}account:{name}", mapping={"p": "their-hash", "f:app": '"other"'})
        raw.hset(f"{other_prefix}session:theirs", mapping={"e": str(time.time() + 600), "u": name})
        raw.sadd(f"{other_prefix}user_sessions:{name}", "theirs")
        before = {key: raw.dump(key) for key in raw.scan_iter(match=other_prefix + "*")}

        server = start_server(**on_redis(redis_url, prefix + "this-app"))
        client = server.client()
        client.create(name, "mine")  # the same user id in another app is no duplicate
        client.call("counter.increment")
        server.client().login(name, "mine")
        client.call("account.update", {"password": "mine", "new_password": "mine2"})  # ends other sessions
        with pytest.raises(TotoClientError) as caught:
            server.client().call("whoami")
        assert caught.value.code in (1004, 1007)

        theirs = server.client()
        theirs.session = {"session_id": "theirs", "user_id": name, "expires": time.time() + 600}
        with pytest.raises(TotoClientError) as caught:
            theirs.call("whoami")
        assert caught.value.code == 1007, "another app's session is unknown here"

        after = {key: raw.dump(key) for key in raw.scan_iter(match=other_prefix + "*")}
        assert after == before
    finally:
        raw.close()


def test_sliding_expiry_renews_the_redis_ttl(start_server, redis_url: str, prefix: str) -> None:
    server = start_server(**on_redis(redis_url, prefix, session_ttl=3, session_renew=0))
    client = server.client()
    client.create(user(), "pw")
    key = f"{prefix}session:{client.session['session_id']}"
    raw = redis.Redis.from_url(redis_url)
    try:
        for _ in range(5):  # 4 s in all, longer than the TTL: each request pushes it out
            time.sleep(0.8)
            client.call("whoami")
            assert 1500 < raw.pttl(key) <= 3000
        time.sleep(3.3)
        assert raw.exists(key) == 0, "Redis expired the session by itself"
        with pytest.raises(TotoClientError) as caught:
            client.call("whoami")
        assert caught.value.code == 1007
    finally:
        raw.close()


def test_database_redis_alone_uses_the_local_redis(start_server, redis_url: str, prefix: str) -> None:
    if redis_url != "redis://127.0.0.1:6379/0":
        pytest.skip("the tests were pointed at another Redis than the default URL")
    client = start_server(database="redis", redis_prefix=prefix, event_bus="redis").client()
    client.create(user(), "pw")
    assert client.call("counter.increment") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"database": "redis", "database_url": "sqlite:///x.db"}, "database 'redis' needs a Redis URL"),
        ({"database": "memory", "event_bus": "redis", "event_url": "http://x"}, "event bus 'redis' needs a Redis URL"),
        ({"database": "redis", "database_url": "redis://:6379:x/0"}, "invalid Redis URL"),
    ],
)
def test_a_wrong_url_stops_the_server_with_a_message(options: dict[str, Any], message: str) -> None:
    server = ServerProcess({**FAST, **options}, cwd=BASIC_APP)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert message in str(caught.value) and "Traceback" not in str(caught.value)
