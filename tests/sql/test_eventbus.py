"""The ``postgres`` event bus (LISTEN/NOTIFY) against the machine's PostgreSQL: the event-bus
contract (a reconnect made by terminating the listener's backend with pg_terminate_backend),
payloads past NOTIFY's 8000 bytes, the history trimmed as it grows, unicast events that wait
for a server, and two real servers that share nothing but PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from toto.eventbus import EventBus, Position
from toto.exceptions import PluginError
from toto.testing import EventBusContract
from toto_sql.eventbus import INLINE_LIMIT, TRIM_EVERY, PostgresEventBus

from tests.redis.test_http import wait_for_event


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def terminate_listener(url: str, bus: EventBus) -> int:
    """pg_terminate_backend of ``bus``'s listening connection (found by its application_name)."""
    assert isinstance(bus, PostgresEventBus)
    conn = await asyncpg.connect(plain(url))
    try:
        ended = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1) AS ended",
            bus.application_name,
        )
    finally:
        await conn.close()
    assert ended == 1, f"no listening connection named {bus.application_name}"
    return int(ended)


class TestPostgresEventBus(EventBusContract):
    url = ""

    @pytest.fixture
    def bus_factory(self, postgres_url: str, prefix: str) -> Callable[[], PostgresEventBus]:
        self.url = postgres_url
        return lambda: PostgresEventBus(postgres_url, prefix=prefix, timeout=2.0)

    async def interrupt(self, bus: EventBus) -> None:
        await terminate_listener(self.url, bus)


async def opened(bus: PostgresEventBus) -> asyncio.Queue[tuple[str, bytes, Position | None]]:
    inbox: asyncio.Queue[tuple[str, bytes, Position | None]] = asyncio.Queue()
    bus.subscribe(lambda name, payload, metadata=None, position=None: inbox.put_nowait((name, payload, position)))
    await bus.open()
    return inbox


async def receive(inbox: asyncio.Queue[Any], seconds: float = 10.0) -> Any:
    return await asyncio.wait_for(inbox.get(), seconds)


def test_payloads_past_notify_limit_arrive_in_order_with_small_ones(postgres_url: str, prefix: str) -> None:
    """NOTIFY carries 8000 bytes at most: larger events travel by number and are read from the table,
    in their place among the small ones that travel inline."""
    sizes = [10, INLINE_LIMIT // 2, 7999, 8000, 8001, 20_000, 5, 3 * 1024 * 1024, 1]

    async def main() -> None:
        sender, receiver = PostgresEventBus(postgres_url, prefix), PostgresEventBus(postgres_url, prefix)
        await sender.open()
        inbox = await opened(receiver)
        try:
            sent = []
            for i, size in enumerate(sizes):
                payload = bytes([i % 256]) * size
                sent.append((f"e{i}", payload, await sender.publish(f"e{i}", payload)))
            got = [await receive(inbox) for _ in sizes]
            assert [(n, len(p), pos) for n, p, pos in got] == [(n, len(p), pos) for n, p, pos in sent]
            assert got == sent
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())


def test_the_history_is_trimmed_and_replay_says_when_it_was(postgres_url: str, prefix: str) -> None:
    async def main() -> None:
        bus = PostgresEventBus(postgres_url, prefix, history=10)
        await bus.open()
        try:
            first = await bus.publish("n", b"0")
            assert first is not None
            for i in range(1, 2 * TRIM_EVERY + 5):
                await bus.publish("n", str(i).encode())
            conn = await asyncpg.connect(plain(postgres_url))
            try:
                kept = await conn.fetchval(f"SELECT count(*) FROM {prefix}events")  # noqa: S608
            finally:
                await conn.close()
            assert 10 <= kept < 10 + TRIM_EVERY, f"{kept} rows kept for a history of 10"
            old = await bus.replay(first)
            assert not old.complete, "events after the first are gone from the table"
            latest = await bus.position()
            assert latest is not None
            recent = await bus.replay(Position(latest.epoch, latest.seq - 3))
            assert recent.complete and [e.payload for e in recent.events] == [
                str(i).encode() for i in range(2 * TRIM_EVERY + 2, 2 * TRIM_EVERY + 5)
            ]
        finally:
            await bus.close()

    asyncio.run(main())


def test_the_listener_reconnects_after_pg_terminate_backend_and_catches_up(
    postgres_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The listening connection is ended by the server (as a restart or a network cut would):
    the bus says so, listens again, and delivers what was published meanwhile, large ones too,
    in order."""
    caplog.set_level(logging.WARNING, logger="toto.sql")

    async def main() -> None:
        sender, receiver = PostgresEventBus(postgres_url, prefix), PostgresEventBus(postgres_url, prefix)
        await sender.open()
        inbox = await opened(receiver)
        try:
            await sender.publish("before", b"0")
            assert (await receive(inbox))[:2] == ("before", b"0")
            await terminate_listener(postgres_url, receiver)
            await sender.publish("during", b"1")
            await sender.publish("during", b"2" * 50_000)
            got = [await receive(inbox) for _ in range(2)]
            assert [(n, p[:1]) for n, p, _ in got] == [("during", b"1"), ("during", b"2")]
            assert any("lost the listening connection" in r.getMessage() for r in caplog.records)
            assert any("listening again" in r.getMessage() for r in caplog.records)
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())


def test_a_unicast_event_waits_for_a_server(postgres_url: str, prefix: str) -> None:
    """An event for one server that no server took (its sender's listener was down, say) waits in
    its table and is taken by the first server that listens, exactly once."""

    async def main() -> None:
        maker = PostgresEventBus(postgres_url, prefix)
        await maker.open()  # makes the tables
        await maker.close()
        conn = await asyncpg.connect(plain(postgres_url))
        try:
            await conn.execute(
                f"INSERT INTO {prefix}event_queue (name, payload, metadata) VALUES ('job', 'waited'::bytea, NULL)"  # noqa: S608
            )
        finally:
            await conn.close()
        first, second = PostgresEventBus(postgres_url, prefix), PostgresEventBus(postgres_url, prefix)
        inbox_a, inbox_b = await opened(first), await opened(second)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while inbox_a.empty() and inbox_b.empty() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            got = [inbox.get_nowait() for inbox in (inbox_a, inbox_b) for _ in range(inbox.qsize())]
            assert got == [("job", b"waited", None)]
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


def test_options_pick_the_url_and_say_what_is_missing(postgres_url: str) -> None:
    class Options:
        event_url = None
        database_url = postgres_url
        sql_table_prefix = "app_"
        sql_timeout = 1.5
        sql_event_history = 50

    bus = PostgresEventBus.from_options(Options())
    assert (bus.events_table, bus.channel, bus.timeout, bus.history) == ("app_events", "app_events", 1.5, 50)
    Options.database_url = "sqlite:///x.db"
    with pytest.raises(PluginError, match="needs a PostgreSQL URL"):
        PostgresEventBus.from_options(Options())
    Options.event_url = "mysql://root@h/db"
    with pytest.raises(PluginError, match="postgresql"):
        PostgresEventBus.from_options(Options())
    Options.event_url = postgres_url
    Options.sql_table_prefix = "bad-prefix"
    with pytest.raises(PluginError, match="sql_table_prefix"):
        PostgresEventBus.from_options(Options())


def test_servers_on_postgresql_alone_send_each_other_events(
    start_server: Callable[..., Any], postgres_url: str, prefix: str
) -> None:
    """A deployment whose only service is PostgreSQL: sessions and events both go through it."""
    options = {
        "database": "postgres",
        "database_url": postgres_url,
        "sql_table_prefix": prefix,
        "event_bus": "postgres",
    }
    a, b = start_server(**options), start_server(**options)
    args = {"text": "héllo", "big": "x" * 20_000}
    assert wait_for_event(b.client(), a.client(), "ping", args) == {"event": "ping", "args": args}
    assert wait_for_event(a.client(), b.client(), "pong", [1]) == {"event": "pong", "args": [1]}
    assert "Traceback" not in a.output() + b.output()
