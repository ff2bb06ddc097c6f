"""Redis through Sentinel: ``redis+sentinel://`` URLs for storage and the bus, the contracts on a
real primary, replica and three Sentinels, and a failover (SIGKILL of the primary) seen through
real Toto servers: the servers follow the new primary by themselves, sessions survive, calls
during the switch answer 1013 and never 1000, and ``redis_wait_replicas`` keeps every
acknowledged write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, PluginError, StorageUnavailable
from toto.testing import StorageContract, run_storages, session_record
from toto.testing.deployment import unique_user
from toto_redis import RedisEventBus, RedisStorage
from toto_redis.connection import parse_address, redact

from tests.redis.failover import FailoverRun
from tests.redis.servers import SentinelGroup, start_with_retries, wait_for
from tests.redis.test_eventbus import RedisBusContract
from tests.redis.test_http import wait_for_event


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    """One group for the contract tests of this module (which kill nothing)."""
    group: SentinelGroup = start_with_retries(SentinelGroup)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def own_sentinels() -> Iterator[SentinelGroup]:
    """A group of one test, whose primary it may kill."""
    group: SentinelGroup = start_with_retries(SentinelGroup)
    try:
        yield group
    finally:
        group.stop()


class TestSentinelStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, sentinels: SentinelGroup, prefix: str) -> Callable[[], RedisStorage]:
        return lambda: RedisStorage(url=sentinels.url(), prefix=prefix)


class TestSentinelEventBus(RedisBusContract):
    @pytest.fixture
    def bus_factory(self, sentinels: SentinelGroup, prefix: str) -> Callable[[], RedisEventBus]:
        self.admin_url = f"redis://127.0.0.1:{sentinels.primary_port()}/0"
        return lambda: RedisEventBus(url=sentinels.url(), prefix=prefix + "events:")


def test_sentinel_urls_parse_and_bad_ones_say_why() -> None:
    address = parse_address("redis+sentinel://s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2")
    assert address.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (address.service, address.db, address.username, address.password) == ("mymaster", 2, None, "s3cret")
    address = parse_address("rediss+sentinel://app:p%40ss@h:1/svc?sentinel_password=other")
    assert (address.username, address.password, address.tls) == ("app", "p@ss", True)
    assert address.sentinel_password == "other"
    assert "s3cret" not in repr(parse_address("redis+sentinel://s3cret@h:1/svc"))
    assert redact("redis+sentinel://s3cret@h:1,h:2/svc") == "redis+sentinel://***@h:1,h:2/svc"
    assert redact("redis+sentinel://app:s3cret@h:1/svc?sentinel_password=x") == "redis+sentinel://app:***@h:1/svc?***"
    for bad, why in (
        ("redis+sentinel://h:1", "names the service"),
        ("redis+sentinel://h:1/svc/0/extra", "names the service"),
        ("redis+sentinel://h:port/svc", "port 'port' is not a number"),
        ("redis+sentinel://h:1/svc/zero", "database number 'zero'"),
        ("redis+sentinel://h:1/svc?timeout=3", "unknown parameter 'timeout'"),
        ("redis+sentinel://:1/svc", "is not host:port"),
    ):
        with pytest.raises(PluginError, match=why):
            parse_address(bad)

    class Options:
        database_url = "redis+sentinel://pw@127.0.0.1:26379/svc"
        event_url = None
        redis_prefix = "app"
        redis_event_prefix = None
        redis_timeout = None
        redis_wait_replicas = 1
        redis_wait_timeout = 0.25

    storage = RedisStorage.from_options(Options())
    assert (storage.url, storage.wait_replicas, storage.wait_timeout) == (Options.database_url, 1, 0.25)
    assert RedisEventBus.from_options(Options()).url == Options.database_url, "the bus follows a Sentinel database_url"
    Options.database_url = "sentinel://h/x"
    with pytest.raises(PluginError, match="needs a Redis URL") as caught:
        RedisStorage.from_options(Options())
    assert "redis+sentinel://" in str(caught.value)
    with pytest.raises(PluginError, match="redis_wait_replicas"):
        RedisStorage("redis://h", wait_replicas=-1)


def test_a_storage_follows_the_new_primary_and_keeps_replicated_sessions(own_sentinels: SentinelGroup) -> None:
    """Calls while the primary is dead raise StorageUnavailable (never anything else); once the
    Sentinels promote the replica, the same storage object serves from it, sessions included."""

    async def body(s: RedisStorage) -> None:
        await s.create_account("kept", "h", {"n": 1})
        await s.store_session(session_record("kept-session", user_id="kept", state=b"before"))
        await asyncio.to_thread(own_sentinels.wait_replicated)  # this test is about failover, not replication lag
        old = own_sentinels.kill_primary()
        failures: list[BaseException] = []
        promoted = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            try:
                loaded = await s.load_session("kept-session")
                await s.save_state("kept-session", b"after")
            except StorageUnavailable as error:
                assert error.code == ERROR_SERVICE_UNAVAILABLE
                failures.append(error)
                await asyncio.sleep(0.05)
                continue
            assert loaded is not None, "a replicated session survives the failover"
            if own_sentinels.primary_port() != old.port:
                promoted = own_sentinels.primary_port()
                break
            await asyncio.sleep(0.05)
        assert promoted == own_sentinels.replica.port, "the storage reached the promoted replica"
        assert failures, "calls while the primary was dead must have failed (with 1013)"
        assert (await s.get_account("kept")) is not None
        loaded = await s.load_session("kept-session")
        assert loaded is not None and loaded.state == b"after"

    run_storages(body, RedisStorage(own_sentinels.url(), "fo:", timeout=1.0))


def test_wait_replicas_refuses_writes_no_replica_confirms(own_sentinels: SentinelGroup) -> None:
    """With ``redis_wait_replicas`` a write that no replica confirms answers 1013 (not acknowledged);
    without it the same write is acknowledged though only the primary holds it."""

    async def body(waiting: RedisStorage, plain: RedisStorage) -> None:
        await waiting.store_session(session_record("w", user_id="w"))
        assert await waiting.save_state("w", b"confirmed") == 1
        own_sentinels.replica.kill()
        with pytest.raises(StorageUnavailable, match="0 of the 1 replicas"):
            await waiting.save_state("w", b"unconfirmed")
        assert await plain.save_state("w", b"primary only") is not None

    run_storages(
        body,
        RedisStorage(own_sentinels.url(), "wait:", wait_replicas=1, wait_timeout=0.3),
        RedisStorage(own_sentinels.url(), "wait:"),
    )


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_servers_ride_a_failover_without_1000_or_a_new_login(
    start_server: Callable[..., Any], prefix: str, wait_replicas: int
) -> None:
    """SIGKILL the primary under two servers (storage and bus on Sentinel) while a signed-in client
    calls: every failed call answers 1013, the session goes on, events flow again afterwards,
    and with ``redis_wait_replicas=1`` (and ``min-replicas-to-write 1`` on the Redis side) no
    acknowledged increment is lost and none that answered 1013 was applied."""
    own_sentinels: SentinelGroup = start_with_retries(lambda: SentinelGroup(min_replicas_to_write=wait_replicas))
    try:
        ride_a_failover(own_sentinels, start_server, prefix, wait_replicas)
    finally:
        own_sentinels.stop()


def ride_a_failover(
    own_sentinels: SentinelGroup, start_server: Callable[..., Any], prefix: str, wait_replicas: int
) -> None:
    options = {
        "database": "redis",
        "database_url": own_sentinels.url(),
        "event_bus": "redis",
        "redis_prefix": prefix,
        "redis_timeout": 1.0,
        "redis_wait_replicas": wait_replicas,
    }
    a, b = start_server(**options), start_server(**options)
    client = a.client()
    client.create(unique_user(), "pw")
    run = FailoverRun()
    run.until(client, lambda: True, 10, calm=10)

    old = own_sentinels.kill_primary()

    def switched() -> bool:
        if own_sentinels.primary_port() == old.port:
            return False
        if wait_replicas and old in own_sentinels.killed:
            # The new primary has no replica to confirm writes: bring the old one back as one.
            own_sentinels.rejoin(old)
        return True

    run.until(client, switched, 40)
    print(f"\nSentinel failover, redis_wait_replicas={wait_replicas}: {run.summary()}")
    assert set(run.answers) <= {0, ERROR_SERVICE_UNAVAILABLE}, f"only 1013 while switching: {run.summary()}"
    assert run.answers[ERROR_SERVICE_UNAVAILABLE] > 0, "calls while the primary was dead must answer 1013"

    on_b = b.client()
    on_b.session = dict(client.session or {})
    final = int(on_b.call("counter.increment"))
    print(f"counter {final - 1} after {run.acknowledged} acknowledged increments")
    if wait_replicas:
        assert final - 1 >= run.acknowledged, f"an acknowledged write was lost: {final} after {run.summary()}"
    assert client.call("whoami")["user_id"] == client.session["user_id"], "the session signed in before goes on"
    args = {"after": "failover"}
    assert wait_for_event(b.client(), a.client(), "after-failover", args) == {"event": "after-failover", "args": args}
    assert "Traceback" not in a.output() + b.output()


def test_a_new_primary_is_found_by_a_server_started_during_the_outage(
    own_sentinels: SentinelGroup, start_server: Callable[..., Any], prefix: str
) -> None:
    """A server that starts while the Sentinels still name the dead primary serves 1013, then heals."""
    old = own_sentinels.kill_primary()
    server = start_server(database="redis", database_url=own_sentinels.url(), redis_prefix=prefix, redis_timeout=1.0)
    own_sentinels.wait_for_failover(old)
    client = server.client()
    wait_for(lambda: _creates(client), 20, "the server did not reach the promoted primary")


def _creates(client: Any) -> bool:
    from toto.client import TotoClientError

    try:
        client.create(unique_user(), "pw")
    except TotoClientError as error:
        assert error.code == ERROR_SERVICE_UNAVAILABLE, error
        return False
    return True
