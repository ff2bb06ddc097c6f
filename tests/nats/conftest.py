"""Fixtures of the toto-nats tests: the machine's NATS (with JetStream), a subject prefix per test
whose streams and object stores are deleted after it, private nats-server processes for restart
tests, and buses behind TCP proxies of their own (so a test can cut one bus's connection)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from toto.testing import TcpProxy
from toto_nats import NatsEventBus
from toto_nats.eventbus import name_of

from tests.redis.servers import free_ports, wait_for
from tests.services import reachable

NATS_HOST = "127.0.0.1"
NATS_PORT = int(os.environ.get("TOTO_TEST_NATS_PORT", "4222"))
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@pytest.fixture(scope="session")
def nats_url() -> str:
    if not reachable(NATS_PORT):
        pytest.fail(f"NATS does not answer on {NATS_HOST}:{NATS_PORT} (tests/services.py starts it)")
    return f"nats://{NATS_HOST}:{NATS_PORT}"


async def delete_streams(url: str, names: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in names:
            try:
                await js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await nc.close()


@pytest.fixture
def subject_prefix(nats_url: str) -> Iterator[str]:
    """A subject prefix of one test; the JetStream stream and object store made for it are deleted after."""
    prefix = f"toto-test.{uuid.uuid4().hex[:10]}.events"
    yield prefix
    stream = name_of(prefix)
    asyncio.run(delete_streams(nats_url, [stream, f"OBJ_{stream}_payloads"]))


class ProxiedBuses:
    """Makes buses that each reach NATS through a TCP proxy of their own, so that one bus's
    connection can be cut (``interrupt``) while the others' stay up."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.proxies: dict[int, TcpProxy] = {}

    def make(self, **options: Any) -> Callable[[], NatsEventBus]:
        def build() -> NatsEventBus:
            proxy = TcpProxy(self.host, self.port)
            proxy.start()
            bus = NatsEventBus(f"nats://127.0.0.1:{proxy.port}", **options)
            self.proxies[id(bus)] = proxy
            return bus

        return build

    def interrupt(self, bus: Any) -> None:
        """Drop the bus's connection as a network fault would; it may connect again at once."""
        proxy = self.proxies[id(bus)]
        proxy.cut()
        proxy.restore()

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()


@pytest.fixture
def proxied(nats_url: str) -> Iterator[ProxiedBuses]:
    buses = ProxiedBuses(NATS_HOST, NATS_PORT)
    try:
        yield buses
    finally:
        buses.stop()


class PrivateNats:
    """A nats-server of one test with JetStream in a temporary directory, which it may restart."""

    def __init__(self) -> None:
        self.port = free_ports(1)[0]
        self.store = Path(tempfile.mkdtemp(prefix="toto-nats-"))
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateNats:
        if not os.path.exists(NATS_SERVER):
            pytest.fail("nats-server is not installed: apt-get install nats-server")
        log = open(self.store / "nats.log", "ab")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store / "js")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: reachable(self.port), 15, f"nats-server on port {self.port} did not listen", self.output)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        try:
            return (self.store / "nats.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.store, ignore_errors=True)


@pytest.fixture
def private_nats() -> Iterator[PrivateNats]:
    server = PrivateNats().start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
