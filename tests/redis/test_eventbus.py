"""RedisEventBus passes the event-bus contract, and survives cut connections and Redis restarts."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import redis
from toto.eventbus import Event, EventBus, encode_position
from toto.exceptions import PluginError, StorageUnavailable
from toto.testing import EventBusContract
from toto_redis import RedisEventBus
from toto_redis.eventbus import decode_broadcast, decode_message, encode_message

from tests.redis.conftest import proxied_url


def kill_listeners(admin: redis.Redis, bus: EventBus) -> int:
    """CLIENT KILL the connections of ``bus``'s listeners, as a network fault would end them."""
    assert isinstance(bus, RedisEventBus)
    killed = 0
    for client in admin.client_list():
        if client.get("name") == bus.client_name:
            killed += int(admin.client_kill_filter(_id=client["id"]))
    assert killed, f"no connection named {bus.client_name}"
    return killed


class RedisBusContract(EventBusContract):
    """The contract, with reconnects made by killing a bus's listener connections on ``admin_url``."""

    admin_url = ""

    async def interrupt(self, bus: EventBus) -> None:
        admin = redis.Redis.from_url(self.admin_url)
        try:
            kill_listeners(admin, bus)
        finally:
            admin.close()


class TestRedisEventBus(RedisBusContract):
    @pytest.fixture
    def bus_factory(self, redis_url: str, prefix: str) -> Callable[[], RedisEventBus]:
        self.admin_url = redis_url
        return lambda: RedisEventBus(url=redis_url, prefix=prefix + "events:")


class TestRedisEventBusWithoutHistory(RedisBusContract):
    """``redis_event_history=0``: at most once, and it says so."""

    @pytest.fixture
    def bus_factory(self, redis_url: str, prefix: str) -> Callable[[], RedisEventBus]:
        self.admin_url = redis_url
        return lambda: RedisEventBus(url=redis_url, prefix=prefix + "events:", history=0)


async def receive(inbox: asyncio.Queue[tuple[str, bytes]], seconds: float = 5.0) -> tuple[str, bytes]:
    return await asyncio.wait_for(inbox.get(), seconds)


async def opened(bus: RedisEventBus) -> asyncio.Queue[tuple[str, bytes]]:
    inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    await bus.open()
    bus.subscribe(lambda name, payload, *_: inbox.put_nowait((name, payload)))
    return inbox


def test_message_framing_round_trips_and_is_not_pickle() -> None:
    for name, payload in (("", b""), ("ünï.cøde", b"\x80\x04"), ("n" * 70000, bytes(range(256)))):
        message = encode_message(name, payload)
        assert decode_message(message) == (name, payload, None)
        assert message.endswith(payload)
        traced = encode_message(name, payload, {"traceparent": "00-abc-def-01", "ü": "✓"})
        assert decode_message(traced) == (name, payload, {"traceparent": "00-abc-def-01", "ü": "✓"})
        assert traced.endswith(payload)
    # An event without metadata keeps the bytes it had before metadata existed.
    assert encode_message("job", b"{}") == b"\x00\x00\x00\x03job{}"
    assert encode_message("job", b"{}", {}) == encode_message("job", b"{}")
    with pytest.raises(ValueError):
        decode_message(encode_message("name", b"")[:-1])
    with pytest.raises(ValueError):
        decode_message(encode_message("name", b"", {"k": "v"})[:12])


def test_wire_messages_carry_the_payload_bytes_verbatim(redis_url: str, prefix: str) -> None:
    """What goes over Redis is the core's payload as given, framed, never pickled."""
    payload = b'{"json":"from the core"}'

    async def main() -> None:
        raw = redis.asyncio.Redis.from_url(redis_url)
        pubsub = raw.pubsub()
        await pubsub.subscribe("{" + prefix + "events:}broadcast")
        await pubsub.get_message(timeout=1)
        bus = RedisEventBus(redis_url, prefix + "events:")
        await bus.open()
        try:
            position = await bus.publish("plain", payload)
            message = None
            while message is None or message["type"] != "message":
                message = await pubsub.get_message(timeout=2)
            assert position is not None
            assert message["data"] == encode_position(position) + encode_message("plain", payload)
            assert decode_broadcast(message["data"]) == Event("plain", payload, None, position)
            assert not message["data"].startswith(pickle.dumps(None)[:2])
            history = await raw.xrange("{" + prefix + "events:}history")
            assert history == [(f"0-{position.seq}".encode(), {b"m": encode_message("plain", payload)})]
        finally:
            await bus.close()
            await pubsub.aclose()
            await raw.aclose()

    asyncio.run(main())


def test_other_prefixes_hear_nothing(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        mine, theirs = RedisEventBus(redis_url, prefix + "a"), RedisEventBus(redis_url, prefix + "a2")
        my_inbox, their_inbox = await opened(mine), await opened(theirs)
        try:
            await mine.publish("b", b"1", broadcast=True)
            await mine.publish("u", b"2", broadcast=False)
            assert await receive(my_inbox) in (("b", b"1"), ("u", b"2"))
            assert await receive(my_inbox) in (("b", b"1"), ("u", b"2"))
            await asyncio.sleep(1.5)
            assert their_inbox.empty()
        finally:
            await mine.close()
            await theirs.close()

    asyncio.run(main())


def test_unicast_goes_to_a_live_server_only(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        gone, live = RedisEventBus(redis_url, prefix), RedisEventBus(redis_url, prefix)
        gone_inbox, live_inbox = await opened(gone), await opened(live)
        await gone.close()
        try:
            for i in range(10):
                await live.publish("job", str(i).encode(), broadcast=False)
            assert [(await receive(live_inbox))[1] for _ in range(10)] == [str(i).encode() for i in range(10)]
            assert gone_inbox.empty()
        finally:
            await live.close()

    asyncio.run(main())


def test_close_is_prompt(redis_url: str, prefix: str) -> None:
    async def main() -> float:
        bus = RedisEventBus(redis_url, prefix)
        await bus.open()
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await bus.close()
        return loop.time() - started

    assert asyncio.run(main()) < 2.0, "close() must not wait out a blocking pop"


def test_a_failing_subscriber_does_not_stop_delivery(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        bus = RedisEventBus(redis_url, prefix)

        def broken(name: str, payload: bytes, metadata: object) -> None:
            raise RuntimeError("subscriber bug")

        bus.subscribe(broken)
        inbox = await opened(bus)
        try:
            await bus.publish("first", b"1")
            await bus.publish("second", b"2")
            assert [await receive(inbox), await receive(inbox)] == [("first", b"1"), ("second", b"2")]
        finally:
            await bus.close()

    asyncio.run(main())


def test_options_pick_the_url_and_prefix(redis_url: str) -> None:
    class Options:
        event_url = None
        database_url = "redis://10.0.0.1:6379/3"
        redis_prefix = "app"
        redis_event_prefix = None
        redis_timeout = None

    bus = RedisEventBus.from_options(Options())
    assert (bus.url, bus.channel, bus.queue) == (
        "redis://10.0.0.1:6379/3",
        "{app:events:}broadcast",
        "app:events:queue",
    )
    assert (bus.meta, bus.stream) == ("{app:events:}meta", "{app:events:}history"), "one hash tag: one Cluster slot"
    Options.database_url = "sqlite:///x.db"
    assert RedisEventBus.from_options(Options()).url == "redis://127.0.0.1:6379/0"
    Options.event_url = redis_url
    Options.redis_event_prefix = "shared-events"
    bus = RedisEventBus.from_options(Options())
    assert (bus.url, bus.channel) == (redis_url, "{shared-events:}broadcast")
    Options.redis_event_prefix = "{tagged}"
    with pytest.raises(PluginError, match="braces"):
        RedisEventBus.from_options(Options())
    Options.redis_event_prefix = None
    Options.event_url = "http://example.invalid"
    with pytest.raises(PluginError, match="needs a Redis URL"):
        RedisEventBus.from_options(Options())


def resubscribed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "resubscribed" in r.getMessage()]


@pytest.mark.parametrize("fault", ["cut", "blackhole", "freeze"])
def test_bus_resubscribes_after_the_connection_drops(
    proxy: Any, prefix: str, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.INFO, logger="toto.redis")

    async def main() -> None:
        url = proxied_url(proxy)
        a, b = RedisEventBus(url, prefix, timeout=1.0), RedisEventBus(url, prefix, timeout=1.0)
        inbox_a, inbox_b = await opened(a), await opened(b)
        try:
            await a.publish("before", b"0")
            assert await receive(inbox_b) == ("before", b"0")
            await receive(inbox_a)

            getattr(proxy, fault)()
            started = asyncio.get_running_loop().time()
            with pytest.raises(StorageUnavailable):
                await a.publish("during", b"x")
            assert asyncio.get_running_loop().time() - started < 5
            await asyncio.sleep(1.0 if fault == "cut" else 6.0)  # silence is noticed by unanswered PINGs
            proxy.restore()

            deadline = asyncio.get_running_loop().time() + 10
            while len(resubscribed(caplog)) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            assert len(resubscribed(caplog)) >= 2, [r.getMessage() for r in caplog.records]

            await a.publish("after", b"1")
            assert await receive(inbox_b) == ("after", b"1")
            assert await receive(inbox_a) == ("after", b"1")
            for i in range(4):
                await b.publish("one", str(i).encode(), broadcast=False)
            got = []
            deadline = asyncio.get_running_loop().time() + 8
            while len(got) < 4 and asyncio.get_running_loop().time() < deadline:
                for inbox in (inbox_a, inbox_b):
                    while not inbox.empty():
                        got.append(inbox.get_nowait()[1])
                await asyncio.sleep(0.05)
            assert sorted(got) == [b"0", b"1", b"2", b"3"]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost the subscription" in m for m in messages)


def test_bus_resubscribes_after_a_redis_restart(private_redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="toto.redis")

    async def main() -> None:
        a, b = RedisEventBus(private_redis.url, "r:"), RedisEventBus(private_redis.url, "r:")
        inbox_a, inbox_b = await opened(a), await opened(b)
        try:
            private_redis.restart()
            deadline = asyncio.get_running_loop().time() + 10
            while len(resubscribed(caplog)) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            assert len(resubscribed(caplog)) >= 2
            await b.publish("back", b"!")
            assert await receive(inbox_a) == ("back", b"!")
            assert await receive(inbox_b) == ("back", b"!")
            await b.publish("single", b"1", broadcast=False)
            await asyncio.sleep(2.5)  # the queue listeners notice the restart on their next pop
            assert inbox_a.qsize() + inbox_b.qsize() == 1
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_an_idle_healthy_subscription_is_kept(redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """PINGs keep an idle subscription; only a missing answer makes the bus reconnect."""
    caplog.set_level(logging.INFO, logger="toto.redis")

    async def main() -> None:
        bus = RedisEventBus(redis_url, prefix, timeout=0.5)
        bus.ping_seconds = 0.2
        inbox = await opened(bus)
        try:
            await asyncio.sleep(2.5)
            await bus.publish("still", b"here")
            assert await receive(inbox) == ("still", b"here")
        finally:
            await bus.close()

    asyncio.run(main())
    assert not [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
