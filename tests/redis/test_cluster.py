"""Redis Cluster: ``redis+cluster://`` URLs for storage and the bus, the contracts on a real
cluster of three primaries with a replica each, and what a deployment meets there: a slot that
moves to another node while servers use it, and a primary killed under them (its replica takes
over). Calls in between answer 1013, never 1000; sessions survive; the bus, on sharded pub/sub,
follows its slot and loses no broadcast (it reads what it missed from its history)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, PluginError, StorageUnavailable
from toto.testing import StorageContract, run_storages, session_record
from toto.testing.deployment import unique_user
from toto_redis import RedisEventBus, RedisStorage
from toto_redis.connection import parse_address

from tests.redis.failover import FailoverRun
from tests.redis.servers import RedisClusterGroup, RedisProcess, start_with_retries, wait_for
from tests.redis.test_eventbus import RedisBusContract
from tests.redis.test_http import wait_for_event


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterGroup]:
    """One cluster for the contract tests of this module (which kill and move nothing)."""
    group: RedisClusterGroup = start_with_retries(RedisClusterGroup)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterGroup]:
    """A cluster of one test, which it may break."""
    group: RedisClusterGroup = start_with_retries(RedisClusterGroup)
    try:
        yield group
    finally:
        group.stop()


class TestClusterStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, cluster: RedisClusterGroup, prefix: str) -> Callable[[], RedisStorage]:
        return lambda: RedisStorage(url=cluster.url(), prefix=prefix)


class TestClusterEventBus(RedisBusContract):
    @pytest.fixture
    def bus_factory(self, cluster: RedisClusterGroup, prefix: str) -> Callable[[], RedisEventBus]:
        channel = RedisEventBus(cluster.url(), prefix + "events:").channel
        self.admin_url = f"redis://127.0.0.1:{cluster.owner_of(channel).port}/0"
        return lambda: RedisEventBus(url=cluster.url(), prefix=prefix + "events:")


def test_cluster_urls_parse_and_refuse_what_a_cluster_cannot_do() -> None:
    address = parse_address("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2")
    assert address.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379)) and address.password == "pw"
    with pytest.raises(PluginError, match="has no path"):
        parse_address("redis+cluster://h:7000/0")
    with pytest.raises(PluginError, match="for redis\\+sentinel"):
        parse_address("redis+cluster://h:7000?sentinel_password=x")
    with pytest.raises(PluginError, match="not available on a Redis Cluster"):
        RedisStorage("redis+cluster://h:7000", wait_replicas=1)


def test_sessions_spread_over_the_slots_and_a_logout_everywhere_reaches_them(
    cluster: RedisClusterGroup, prefix: str
) -> None:
    """A user's sessions live in many slots (no hash tag ties them to the user's set), and
    ending them all is still one call that ends every one."""

    async def body(s: RedisStorage) -> None:
        ids = [f"spread-{i}" for i in range(40)]
        for session_id in ids:
            await s.store_session(session_record(session_id, user_id="many-slots"))
        owners = {cluster.owner_of(f"{prefix}session:{i}").port for i in ids}
        assert len(owners) == 3, "sessions of one user live on every primary"
        await s.delete_user_sessions("many-slots", keep="spread-7")
        remaining = [i for i in ids if await s.load_session(i) is not None]
        assert remaining == ["spread-7"]

    run_storages(body, RedisStorage(cluster.url(), prefix))


def move_slot(group: RedisClusterGroup, key: str) -> tuple[RedisProcess, RedisProcess]:
    """Move ``key``'s slot, with its keys, to another primary: the steps of ``redis-cli --cluster
    reshard`` for one slot (IMPORTING, MIGRATING, MIGRATE each key, SETSLOT NODE everywhere)."""
    source = group.owner_of(key)
    target = next(node for node in group.primaries_now() if node is not source)
    source_id, target_id = group.node_id(source), group.node_id(target)
    with contextlib.closing(source.client()) as src, contextlib.closing(target.client()) as dst:
        slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in group.primaries_now():
            with contextlib.closing(node.client()) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_for(lambda: group.owner_of(key) is target, 10, f"slot {slot} did not move")
    return source, target


def test_servers_follow_a_slot_that_moves(
    own_cluster: RedisClusterGroup, start_server: Callable[..., Any], prefix: str
) -> None:
    """The slots of a session and of the bus move to other primaries under two servers: calls
    go on (1013 at most, never 1000), the session too, and no broadcast is lost."""
    options = {"database": "redis", "database_url": own_cluster.url(), "event_bus": "redis", "redis_prefix": prefix}
    a, b = start_server(**options), start_server(**options)
    client = a.client()
    client.create(unique_user(), "pw")
    run = FailoverRun()
    run.until(client, lambda: True, 10, calm=5)

    session_key = f"{prefix}session:{client.session['session_id']}"
    moved_from, moved_to = move_slot(own_cluster, session_key)
    assert moved_from is not moved_to
    run.until(client, lambda: True, 20, calm=10)
    channel = RedisEventBus(own_cluster.url(), prefix + "events:").channel
    move_slot(own_cluster, channel)
    run.until(client, lambda: True, 20, calm=10)
    print(f"\nCluster slot moves: {run.summary()}")
    assert set(run.answers) <= {0, ERROR_SERVICE_UNAVAILABLE}, run.summary()
    assert client.call("whoami")["user_id"] == client.session["user_id"]
    args = {"after": "resharding"}
    assert wait_for_event(b.client(), a.client(), "after-move", args) == {"event": "after-move", "args": args}
    assert "Traceback" not in a.output() + b.output()


def test_servers_ride_a_primary_failover(
    own_cluster: RedisClusterGroup, start_server: Callable[..., Any], prefix: str
) -> None:
    """SIGKILL the primary that holds a signed-in user's session: calls answer 1013 until its
    replica takes over, never 1000, and the session goes on without a new login."""
    options = {
        "database": "redis",
        "database_url": own_cluster.url(),
        "event_bus": "redis",
        "redis_prefix": prefix,
        "redis_timeout": 1.0,
    }
    a, b = start_server(**options), start_server(**options)
    client = a.client()
    client.create(unique_user(), "pw")
    run = FailoverRun()
    run.until(client, lambda: True, 10, calm=10)
    session_key = f"{prefix}session:{client.session['session_id']}"
    dead = own_cluster.owner_of(session_key)
    own_cluster.kill(dead)

    def replaced() -> bool:
        owner = own_cluster.owner_of(session_key)
        return owner is not dead

    run.until(client, replaced, 40)
    print(f"\nCluster failover: {run.summary()}")
    assert set(run.answers) <= {0, ERROR_SERVICE_UNAVAILABLE}, run.summary()
    assert run.answers[ERROR_SERVICE_UNAVAILABLE] > 0, "calls while the slot had no primary must answer 1013"
    assert client.call("whoami")["user_id"] == client.session["user_id"], "the session signed in before goes on"
    args = {"after": "failover"}
    assert wait_for_event(b.client(), a.client(), "after-failover", args) == {"event": "after-failover", "args": args}
    assert "Traceback" not in a.output() + b.output()


def run_buses(group: RedisClusterGroup, prefix: str, body: Callable[..., Any]) -> None:
    """``await body(publisher, got, loop)`` with two buses on ``group``: one publishes, the other
    collects what it receives in ``got``; then every acknowledged broadcast (``body`` answers
    them) must have arrived, once each, in order."""

    async def main() -> None:
        publisher = RedisEventBus(group.url(), prefix + "events:", timeout=1.0)
        receiver = RedisEventBus(group.url(), prefix + "events:", timeout=1.0)
        got: list[bytes] = []
        receiver.subscribe(lambda name, payload, *_: got.append(payload))
        await publisher.open()
        await receiver.open()
        loop = asyncio.get_running_loop()
        try:
            acknowledged = await body(publisher, got, loop)
            deadline = loop.time() + 20
            while loop.time() < deadline and len(got) < len(acknowledged):
                await asyncio.sleep(0.05)
            assert got == acknowledged, f"lost or duplicated: {set(acknowledged) ^ set(got)}"
        finally:
            await publisher.close()
            await receiver.close()

    asyncio.run(main())


def test_the_bus_loses_no_broadcast_when_its_primary_fails_over(own_cluster: RedisClusterGroup, prefix: str) -> None:
    """The primary of the bus's slot dies: publishes fail (1013) until its replica takes over,
    then every broadcast that was acknowledged reaches both servers, once each, in order."""

    async def body(publisher: RedisEventBus, got: list[bytes], loop: asyncio.AbstractEventLoop) -> list[bytes]:
        acknowledged: list[bytes] = []
        refused = 0
        for i in range(5):
            await publisher.publish("e", f"{i}".encode())
            acknowledged.append(f"{i}".encode())
        dead = own_cluster.owner_of(publisher.channel)
        own_cluster.kill(dead)
        deadline = loop.time() + 40
        i = 5
        while loop.time() < deadline and (own_cluster.owner_of(publisher.channel) is dead or refused == 0):
            try:
                await publisher.publish("e", f"{i}".encode())
                acknowledged.append(f"{i}".encode())
            except StorageUnavailable:
                refused += 1
            i += 1
            await asyncio.sleep(0.05)
        for j in range(5):
            # A client may meet the dead node once more before it learns the new one: retry 1013.
            while loop.time() < deadline:
                try:
                    await publisher.publish("e", f"after-{j}".encode())
                except StorageUnavailable:
                    refused += 1
                    await asyncio.sleep(0.05)
                    continue
                acknowledged.append(f"after-{j}".encode())
                break
        print(f"\nCluster bus failover: {len(acknowledged)} acknowledged, {refused} 1013")
        return acknowledged

    run_buses(own_cluster, prefix, body)


def test_the_bus_loses_no_broadcast_when_its_slot_moves(own_cluster: RedisClusterGroup, prefix: str) -> None:
    """The bus's slot moves to another primary while broadcasts go out: the receiver, told by
    the old node that its shard channel is gone, subscribes on the new one and reads what it
    missed from the history that moved along; every broadcast arrives once, in order."""

    async def body(publisher: RedisEventBus, got: list[bytes], loop: asyncio.AbstractEventLoop) -> list[bytes]:
        acknowledged: list[bytes] = []
        moving = loop.run_in_executor(None, move_slot, own_cluster, publisher.channel)
        i = 0
        deadline = loop.time() + 30
        while loop.time() < deadline and (not moving.done() or i < 40):
            try:
                await publisher.publish("e", f"{i}".encode())
                acknowledged.append(f"{i}".encode())
            except StorageUnavailable:
                pass  # TRYAGAIN while the bus's two keys are on two nodes
            i += 1
            await asyncio.sleep(0.01)
        await moving
        print(f"\nCluster bus slot move: {len(acknowledged)} acknowledged of {i}")
        return acknowledged

    run_buses(own_cluster, prefix, body)
