"""Sockets recover what they missed: a socket that subscribes again with its last position
gets what came after it from the bus's history, then live events, without duplicates or
reordering at the seam; where the bus keeps no history, the position is too old or of
another epoch, it is told of a gap (README "WebSockets", docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis
from toto.client import TotoClient
from toto.exceptions import ERROR_MALFORMED_REQUEST
from toto.testing.server import ServerProcess

from tests.nats.conftest import nats_url, subject_prefix  # noqa: F401 - fixtures
from tests.redis.conftest import REDIS_HOST, REDIS_PORT
from tests.sql.conftest import postgres_url, table_prefix  # noqa: F401 - fixtures
from tests.websocket.conftest import PATIENCE, answer, raw_socket, run
from tests.websocket.test_redis import _redis


async def _missed(server: ServerProcess, name: str, values: list[Any]) -> None:
    """Send ``values`` as events ``name``, one after the other, from another socket."""
    async with await server.async_client().connect() as other:
        for value in values:
            await other.call("events.send", {"name": name, "args": value})


async def _events(sock: Any, count: int) -> list[tuple[str, Any]]:
    return [await sock.next_event(PATIENCE) for _ in range(count)]


def _replays_exactly_what_was_missed(server: ServerProcess) -> None:
    async def scenario() -> None:
        sock = await server.async_client().connect()
        assert await sock.subscribe("feed") == ["feed"]
        await _missed(server, "feed", [0])
        assert await sock.next_event(PATIENCE) == ("feed", 0)
        seen = sock.position
        assert seen is not None and seen.seq >= 1
        await sock.close()
        # Missed while away: five of its events, and others it never subscribed to between them.
        async with await server.async_client().connect() as other:
            for n in range(1, 6):
                await other.call("events.send", {"name": "other", "args": n})
                await other.call("events.send", {"name": "feed", "args": n})
        assert await sock.reconnect() is True
        assert sock.recovered is True
        await _missed(server, "feed", ["live"])
        assert await _events(sock, 6) == [("feed", n) for n in range(1, 6)] + [("feed", "live")]
        assert sock.position is not None and sock.position.epoch == seen.epoch
        assert sock.position.seq == seen.seq + 11  # ten missed (five its own), one live
        await _missed(server, "feed", ["after"])
        assert await sock.next_event(PATIENCE) == ("feed", "after")  # nothing pushed twice
        await sock.close()

    run(scenario())
    assert "Traceback" not in server.output()


def test_redis_replays_exactly_what_was_missed_in_order_then_live(socket_server) -> None:
    _replays_exactly_what_was_missed(socket_server(**_redis()))


def test_postgres_bus_replays_what_was_missed(socket_server, postgres_url: str) -> None:  # noqa: F811
    options = {"event_bus": "postgres", "database_url": postgres_url, "sql_table_prefix": table_prefix()}
    _replays_exactly_what_was_missed(socket_server(**options))


def test_jetstream_replays_what_was_missed(socket_server, nats_url: str, subject_prefix: str) -> None:  # noqa: F811
    options = {"event_bus": "nats", "event_url": nats_url, "nats_subject_prefix": subject_prefix}
    _replays_exactly_what_was_missed(socket_server(nats_jetstream=True, **options))


def test_reconnecting_to_another_server_of_the_bus_recovers(socket_server) -> None:
    """Positions are the bus's: a socket that comes back through another server (behind a
    balancer) recovers from the same history."""
    shared = _redis()
    a, b = socket_server(**shared), socket_server(**shared)

    async def scenario() -> None:
        sock = await a.async_client().connect()
        await sock.subscribe("feed")
        await _missed(a, "feed", [0])
        assert await sock.next_event(PATIENCE) == ("feed", 0)
        await sock.close()
        await _missed(a, "feed", [1, 2, 3])
        sock.client.port = b.port
        assert await sock.reconnect() is True
        await _missed(a, "feed", ["live"])
        assert await _events(sock, 4) == [("feed", 1), ("feed", 2), ("feed", 3), ("feed", "live")]
        await sock.close()

    run(scenario())


def test_no_duplicate_or_reordering_at_the_seam_while_events_flow(socket_server) -> None:
    """Publishers never stop: events published while the socket resubscribes (heard live and
    read from the history at once) arrive once each, in the bus's order, none missing."""
    server = socket_server(**_redis())
    publishers, each = 4, 60

    async def scenario() -> None:
        sock = await server.async_client().connect()
        got: list[tuple[int, list[int]]] = []  # (seq, [publisher, n]) in arrival order

        def take(data: Any) -> None:
            assert sock.position is not None
            got.append((sock.position.seq, data))

        await sock.subscribe("tick", callback=take)
        flow = [
            asyncio.ensure_future(_missed(server, "tick", [[p, n] for n in range(each)])) for p in range(publishers)
        ]
        for _ in range(3):  # drop the connection three times while they publish
            deadline = asyncio.get_running_loop().time() + PATIENCE
            mark = len(got)
            while len(got) < mark + 10 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
            await sock.close()
            assert await sock.reconnect() is True
        await asyncio.gather(*flow)
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while len(got) < publishers * each and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # room for a duplicate to show up, were there one
        seqs = [seq for seq, _ in got]
        bad = next((i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1), None)
        assert bad is None, ("a hole, a duplicate or a reordering", got[max(0, (bad or 0) - 5) : (bad or 0) + 5])
        assert len(seqs) == publishers * each
        for p in range(publishers):
            assert [n for q, n in (d for _, d in got) if q == p] == list(range(each))
        await sock.close()

    run(scenario())


def test_a_new_epoch_is_a_gap_and_the_new_epoch_follows(socket_server) -> None:
    options = _redis()
    server = socket_server(**options)

    async def scenario() -> None:
        sock = await server.async_client().connect()
        await sock.subscribe("feed")
        await _missed(server, "feed", [1])
        assert await sock.next_event(PATIENCE) == ("feed", 1)
        old = sock.position
        assert old is not None
        await sock.close()
        # The stream's numbers are lost (a Redis without persistence restarted): a new epoch.
        store = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        prefix = options["redis_event_prefix"]
        assert store.delete("{" + prefix + "}meta") == 1
        store.close()
        await _missed(server, "feed", [2, 3])
        gaps: list[dict[str, Any]] = []
        sock.on_gap = gaps.append
        assert await sock.reconnect() is False
        assert len(gaps) == 1 and gaps[0]["recovered"] is False
        # What history holds of the new epoch comes (from its start), then live events.
        await _missed(server, "feed", [4])
        assert await _events(sock, 3) == [("feed", 2), ("feed", 3), ("feed", 4)]
        assert sock.position is not None and sock.position.epoch != old.epoch and sock.position.seq == 3
        await sock.close()

    run(scenario())


def test_more_missed_than_the_cap_is_a_gap(socket_server) -> None:
    server = socket_server(socket_recovery_limit=3, **_redis())

    async def scenario() -> None:
        sock = await server.async_client().connect()
        await sock.subscribe("feed")
        await _missed(server, "feed", [0])
        await sock.next_event(PATIENCE)
        await sock.close()
        await _missed(server, "feed", [1, 2, 3, 4, 5])
        assert await sock.reconnect() is False
        await _missed(server, "feed", ["live"])
        assert await _events(sock, 4) == [("feed", 1), ("feed", 2), ("feed", 3), ("feed", "live")]
        await sock.close()

    run(scenario())


def test_the_local_bus_keeps_no_history_a_reconnect_is_told_of_the_gap(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        sock = await server.async_client().connect()
        await sock.subscribe("feed")
        await _missed(server, "feed", [0])
        assert await sock.next_event(PATIENCE) == ("feed", 0)
        # Nothing missed: nothing to recover, even without history.
        await sock.close()
        assert await sock.reconnect() is True
        await sock.close()
        await _missed(server, "feed", [1, 2])
        gaps: list[dict[str, Any]] = []
        sock.on_gap = gaps.append
        assert await sock.reconnect() is False
        assert gaps and gaps[0]["recovered"] is False and gaps[0]["replayed"] == 0
        await _missed(server, "feed", [3])
        assert await sock.next_event(PATIENCE) == ("feed", 3)  # live ones go on
        await sock.close()

    run(scenario())


def test_another_servers_epoch_is_a_gap_on_the_local_bus(socket_server) -> None:
    """A restarted server (local bus: a new epoch each start) cannot know what the old one sent."""
    first = socket_server()

    async def scenario() -> None:
        sock = await first.async_client().connect()
        await sock.subscribe("feed")
        await _missed(first, "feed", [1])
        await sock.next_event(PATIENCE)
        await sock.close()
        first.close()
        second = socket_server()
        sock.client.port = second.port
        assert await sock.reconnect() is False
        await sock.close()

    run(scenario())


def test_frames_on_the_wire_and_bad_positions(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(
            json.dumps({"id": 1, "method": "toto.subscribe", "parameters": {"events": ["tick"], "recover": True}})
        )
        first = await answer(conn)
        assert first == {"id": 1, "result": {"subscribed": ["tick"], "position": None}}
        TotoClient(server.url).call("events.send", {"name": "tick", "args": {"at": 1}})
        pushed = await answer(conn)
        assert pushed["event"] == "tick" and pushed["data"] == {"at": 1}
        position = pushed["position"]
        assert set(position) == {"epoch", "seq"} and position["seq"] == 1
        for n, bad in enumerate(
            [{"epoch": 1, "seq": 1}, {"epoch": "e", "seq": -1}, {"epoch": "e"}, "1:2", {"epoch": "x" * 65, "seq": 1}],
            start=2,
        ):
            conn.write_message(
                json.dumps({"id": n, "method": "toto.subscribe", "parameters": {"events": ["tick"], "since": bad}})
            )
            refused = await answer(conn)
            assert refused["id"] == n and refused["error"]["code"] == ERROR_MALFORMED_REQUEST, refused
        conn.write_message(
            json.dumps({"id": 9, "method": "toto.subscribe", "parameters": {"events": ["tick"], "since": position}})
        )
        assert await answer(conn) == {
            "id": 9,
            "result": {"subscribed": ["tick"], "position": position, "recovered": True, "replayed": 0},
        }
        conn.close()

    run(scenario())
    assert "Traceback" not in server.output()
