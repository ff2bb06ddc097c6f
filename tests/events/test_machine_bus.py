"""The ``machine`` bus passes the event bus contract and survives dead peers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from toto.machinebus import MachineBus, socket_directory
from toto.testing import EventBusContract


class TestMachineBus(EventBusContract):
    @pytest.fixture
    def bus_factory(self, tmp_path: Path) -> Callable[[], MachineBus]:
        return lambda: MachineBus(str(tmp_path / "events"))


def test_dead_peer_is_skipped_and_removed(tmp_path: Path) -> None:
    directory = tmp_path / "events"

    async def main() -> None:
        bus = MachineBus(str(directory))
        await bus.open()
        got: list[tuple[str, bytes]] = []
        bus.subscribe(lambda name, payload, *_: got.append((name, payload)))
        # A socket file left behind by a process killed with SIGKILL: bound, never listening.
        stale = os.path.join(bus.directory, "999999-dead.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(stale)
        sock.close()
        for i in range(10):
            await bus.publish("job", str(i).encode(), broadcast=False)
        await asyncio.sleep(0.1)
        assert sorted(p for _, p in got) == sorted(str(i).encode() for i in range(10))
        assert not os.path.exists(stale)
        await bus.close()
        assert not os.path.exists(bus.path)

    asyncio.run(main())


def test_long_directory_gets_a_short_socket_directory(tmp_path: Path) -> None:
    long_dir = tmp_path / ("x" * 120)
    short = socket_directory(str(long_dir))
    assert short != str(long_dir) and len(short) < 80
    assert socket_directory(str(long_dir)) == short

    async def main() -> None:
        a, b = MachineBus(str(long_dir)), MachineBus(str(long_dir))
        await a.open()
        await b.open()
        got: list[bytes] = []
        b.subscribe(lambda name, payload, *_: got.append(payload))
        await a.publish("x", b"1")
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [b"1"]
        await a.close()
        await b.close()

    asyncio.run(main())


def test_a_peer_that_goes_away_is_forgotten(tmp_path: Path) -> None:
    directory = str(tmp_path / "events")

    async def main() -> None:
        a, b = MachineBus(directory), MachineBus(directory)
        await a.open()
        await b.open()
        got: list[bytes] = []
        b.subscribe(lambda name, payload, *_: got.append(payload))
        await a.publish("x", b"1")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [b"1"]
        await b.close()  # a still holds a connection to b
        c = MachineBus(directory)
        await c.open()
        received: list[bytes] = []
        a.subscribe(lambda name, payload, *_: received.append(payload))
        c.subscribe(lambda name, payload, *_: received.append(payload))
        for i in range(20):
            await a.publish("x", str(i).encode(), broadcast=False)
        for _ in range(200):
            if len(received) == 20:
                break
            await asyncio.sleep(0.01)
        assert sorted(received, key=int) == [str(i).encode() for i in range(20)], "b's events went nowhere"
        assert got == [b"1"], "a closed bus receives nothing"
        assert len(os.listdir(c.directory)) == 2, "only the live sockets remain"
        await a.close()
        await c.close()
        assert os.listdir(c.directory) == []

    asyncio.run(main())
