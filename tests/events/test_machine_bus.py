"""The ``machine`` bus passes the event bus contract and survives dead peers."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from toto.exceptions import PluginError
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


def test_the_socket_directory_is_made_private(tmp_path: Path) -> None:
    long_dir = tmp_path / ("y" * 120)  # the short fallback, in the shared temporary directory

    async def main() -> None:
        for directory in (str(tmp_path / "events"), str(long_dir)):
            bus = MachineBus(directory)
            await bus.open()
            assert stat.S_IMODE(os.lstat(bus.directory).st_mode) == 0o700
            await bus.close()
            shutil.rmtree(bus.directory)

    asyncio.run(main())


def open_refused(directory: str) -> str:
    async def main() -> str:
        with pytest.raises(PluginError) as refused:
            await MachineBus(directory).open()
        return str(refused.value)

    return asyncio.run(main())


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a path short enough to hold sockets itself (tmp_path's is not)."""
    path = Path(tempfile.mkdtemp(prefix="toto-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_directory_others_can_enter_is_refused(short_dir: Path) -> None:
    # Another local user made the (predictable) directory first, or it was made loose by hand.
    directory = short_dir / "events"
    directory.mkdir()
    directory.chmod(0o777)
    assert socket_directory(str(directory)) == str(directory)
    message = open_refused(str(directory))
    assert "lets other users in (mode 777" in message and "\n" not in message
    assert not list(directory.iterdir()), "no socket was put there"
    (short_dir / "elsewhere").mkdir(mode=0o700)
    (short_dir / "link").symlink_to(short_dir / "elsewhere", target_is_directory=True)
    assert "is not a directory" in open_refused(str(short_dir / "link"))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user owns takes root")
def test_a_directory_of_another_user_is_refused(short_dir: Path, tmp_path: Path) -> None:
    directory = short_dir / "events"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)  # nobody
    assert "belongs to uid 65534" in open_refused(str(directory))
    long_dir = str(tmp_path / ("z" * 120))
    fallback = socket_directory(long_dir)  # a predictable name in the shared temporary directory
    os.makedirs(fallback, mode=0o700)
    try:
        os.chown(fallback, 65534, 65534)
        assert "belongs to uid 65534" in open_refused(long_dir)
    finally:
        shutil.rmtree(fallback)


def test_a_server_refuses_to_start_on_a_loose_directory(start_server, short_dir: Path) -> None:
    short_dir.chmod(0o775)
    with pytest.raises(RuntimeError) as failed:
        start_server(event_bus="machine", event_url=str(short_dir), database="memory")
    output = str(failed.value)
    assert "machine event bus:" in output and "lets other users in" in output
    assert "Traceback" not in output
