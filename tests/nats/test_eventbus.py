"""The ``nats`` event bus against the machine's NATS (127.0.0.1:4222, JetStream on): the event-bus
contract in core NATS and in JetStream (reconnects made by cutting one bus's TCP proxy),
JetStream's de-duplication by ``Nats-Msg-Id``, payloads past NATS's max_payload, a private
nats-server restarted under the bus, and real servers sending each other events over NATS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.eventbus import EventBus
from toto.exceptions import PluginError, StorageUnavailable
from toto.testing import EventBusContract
from toto_nats import NatsEventBus
from toto_nats.eventbus import parse_servers

from tests.nats.conftest import PrivateNats, ProxiedBuses
from tests.redis.test_http import wait_for_event


class NatsBusContract(EventBusContract):
    proxied: ProxiedBuses | None = None

    async def interrupt(self, bus: EventBus) -> None:
        assert self.proxied is not None
        self.proxied.interrupt(bus)


class TestCoreNatsEventBus(NatsBusContract):
    @pytest.fixture
    def bus_factory(self, proxied: ProxiedBuses, subject_prefix: str) -> Callable[[], NatsEventBus]:
        self.proxied = proxied
        return proxied.make(subject_prefix=subject_prefix)


class TestJetStreamEventBus(NatsBusContract):
    @pytest.fixture
    def bus_factory(self, proxied: ProxiedBuses, subject_prefix: str) -> Callable[[], NatsEventBus]:
        self.proxied = proxied
        return proxied.make(subject_prefix=subject_prefix, jetstream=True)


async def opened(bus: NatsEventBus) -> asyncio.Queue[tuple[str, bytes, Any]]:
    inbox: asyncio.Queue[tuple[str, bytes, Any]] = asyncio.Queue()
    bus.subscribe(lambda name, payload, metadata=None, position=None: inbox.put_nowait((name, payload, position)))
    await bus.open()
    return inbox


async def receive(inbox: asyncio.Queue[Any], seconds: float = 10.0) -> Any:
    return await asyncio.wait_for(inbox.get(), seconds)


def test_jetstream_stores_a_retried_publish_once(nats_url: str, subject_prefix: str) -> None:
    """A publish sent again with the same Nats-Msg-Id (what the bus does when an acknowledgement
    is lost) is stored once, answered with the first one's position, and delivered once."""

    async def main() -> None:
        sender = NatsEventBus(nats_url, subject_prefix, jetstream=True)
        receiver = NatsEventBus(nats_url, subject_prefix, jetstream=True)
        await sender.open()
        inbox = await opened(receiver)
        try:
            first = await sender._send(b"\x00\x00\x00\x01xpayload", {}, "same-id")
            again = await sender._send(b"\x00\x00\x00\x01xpayload", {}, "same-id")
            other = await sender._send(b"\x00\x00\x00\x01yother", {}, "another-id")
            assert again == first and other.seq == first.seq + 1
            assert await receive(inbox) == ("x", b"payload", first)
            assert await receive(inbox) == ("y", b"other", other)
            await asyncio.sleep(0.5)
            assert inbox.empty(), "the retried publish was delivered twice"
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())


@pytest.mark.parametrize("jetstream", [False, True])
def test_payloads_past_max_payload_go_through_the_object_store(
    nats_url: str, subject_prefix: str, jetstream: bool
) -> None:
    async def main() -> None:
        sender = NatsEventBus(nats_url, subject_prefix, jetstream=jetstream)
        receiver = NatsEventBus(nats_url, subject_prefix, jetstream=jetstream)
        sent_back = await opened(sender)
        inbox = await opened(receiver)
        try:
            assert sender._nc is not None
            limit = sender._nc.max_payload
            sizes = [10, limit - 5000, limit, 3 * limit, 7]
            for i, size in enumerate(sizes):
                await sender.publish(f"e{i}", bytes([i]) * size)
            got = [await receive(inbox) for _ in sizes]
            assert [(n, p) for n, p, _ in got] == [(f"e{i}", bytes([i]) * size) for i, size in enumerate(sizes)]
            assert [(await receive(sent_back))[0] for _ in sizes] == [f"e{i}" for i in range(len(sizes))]
            # One server of the two (the sender is one too) takes an event for one server.
            await sender.publish("one", b"u" * (2 * limit), broadcast=False)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while inbox.empty() and sent_back.empty() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            taken = [q.get_nowait() for q in (inbox, sent_back) for _ in range(q.qsize())]
            assert [(n, len(p)) for n, p, _ in taken] == [("one", 2 * limit)]
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())


def test_jetstream_bus_survives_a_nats_restart_and_loses_nothing(
    private_nats: PrivateNats, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL the (private) nats-server and start it again on the same store: sends meanwhile answer
    1013, the buses reconnect by themselves, and every acknowledged broadcast arrives once, in order.
    A send that was on its way when the server died answers 1013 too, yet may have been stored: it
    may arrive, once, in its place."""
    caplog.set_level(logging.WARNING, logger="toto.nats")

    async def main() -> None:
        sender = NatsEventBus(private_nats.url, "restart.events", jetstream=True, timeout=1.0)
        receiver = NatsEventBus(private_nats.url, "restart.events", jetstream=True, timeout=1.0)
        await sender.open()
        inbox = await opened(receiver)
        loop = asyncio.get_running_loop()
        try:
            acknowledged = []
            for i in range(5):
                await sender.publish("e", str(i).encode())
                acknowledged.append(str(i).encode())
            private_nats.kill()
            refused = 0
            try:
                await sender.publish("e", b"refused-0")
            except StorageUnavailable:
                refused += 1
            await loop.run_in_executor(None, private_nats.start)
            deadline = loop.time() + 30
            i = 5
            while loop.time() < deadline and len(acknowledged) < 15:
                try:
                    await sender.publish("e", str(i).encode())
                except StorageUnavailable:
                    refused += 1
                    i += 1
                    await asyncio.sleep(0.1)
                    continue
                acknowledged.append(str(i).encode())
                i += 1
            got: list[bytes] = []
            while loop.time() < deadline and not set(acknowledged) <= set(got):
                try:
                    got.append((await asyncio.wait_for(inbox.get(), 1.0))[1])
                except asyncio.TimeoutError:
                    continue
            await asyncio.sleep(0.5)
            while not inbox.empty():
                got.append(inbox.get_nowait()[1])
            extra = [p for p in got if p not in acknowledged]
            print(f"\nNATS restart, JetStream: {len(acknowledged)} acknowledged, {refused} 1013, {len(got)} got")
            assert refused >= 1, "a send while NATS was down answers 1013"
            assert [p for p in got if p in acknowledged] == acknowledged, f"lost or out of order: {got}"
            assert len(got) == len(set(got)), f"duplicated: {got}"
            assert len(extra) <= 1, f"only a send on its way when the server died may arrive unacknowledged: {extra}"
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())
    assert any("reconnected" in r.getMessage() for r in caplog.records)


def test_a_bus_opened_while_nats_is_down_connects_when_it_is_up(private_nats: PrivateNats) -> None:
    async def main() -> None:
        private_nats.kill()
        bus = NatsEventBus(private_nats.url, "late.events", timeout=1.0)
        inbox = await opened(bus)
        try:
            with pytest.raises(StorageUnavailable):
                await bus.publish("early", b"0")
            assert await bus.ping() is False
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, private_nats.start)
            deadline = loop.time() + 20
            while loop.time() < deadline and not await bus.ping():
                await asyncio.sleep(0.1)
            await bus.publish("late", b"1")
            assert (await receive(inbox))[:2] == ("late", b"1")
        finally:
            await bus.close()

    asyncio.run(main())


def test_urls_and_options(nats_url: str) -> None:
    assert parse_servers("nats://a:4222,b:4223, nats://c") == ["nats://a:4222", "nats://b:4223", "nats://c"]
    with pytest.raises(PluginError, match="needs a NATS URL"):
        parse_servers("redis://h:6379")

    class Options:
        event_url = "nats://a:4222,b:4222"
        nats_subject_prefix = "app.events"
        nats_jetstream = True
        nats_stream = None
        nats_event_history = 50
        nats_payload_ttl = None
        nats_timeout = 1.5

    bus = NatsEventBus.from_options(Options())
    assert (bus.servers, bus.subject, bus.stream, bus.history) == (
        ["nats://a:4222", "nats://b:4222"],
        "app.events.broadcast",
        "APP_EVENTS",
        50,
    )
    assert bus.delivery.guarantee == "at-least-once" and bus.delivery.history
    Options.nats_jetstream = False
    assert NatsEventBus.from_options(Options()).delivery.guarantee == "at-most-once"
    Options.nats_subject_prefix = "bad prefix"
    with pytest.raises(PluginError, match="nats_subject_prefix"):
        NatsEventBus.from_options(Options())


@pytest.fixture
def nats_options(nats_url: str, subject_prefix: str) -> Iterator[dict[str, Any]]:
    yield {"database": "memory", "event_bus": "nats", "event_url": nats_url, "nats_subject_prefix": subject_prefix}


@pytest.mark.parametrize("jetstream", [False, True])
def test_servers_send_each_other_events_over_nats(
    start_server: Callable[..., Any], nats_options: dict[str, Any], jetstream: bool
) -> None:
    a = start_server(**nats_options, nats_jetstream=jetstream)
    b = start_server(**nats_options, nats_jetstream=jetstream)
    args = {"text": "héllo", "n": [1, 2.5, None]}
    assert wait_for_event(b.client(), a.client(), "ping", args) == {"event": "ping", "args": args}
    assert wait_for_event(a.client(), b.client(), "pong", [1]) == {"event": "pong", "args": [1]}
    assert "Traceback" not in a.output() + b.output()
