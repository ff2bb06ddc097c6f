"""Fixtures of the toto-redis tests: the machine's Redis (started when it is down), a key
prefix of this run (its keys are deleted at the end), private Redis servers for restart
tests, a cuttable TCP proxy, and Redis described for the contract kit (``backend``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from toto.testing import Backend, TcpProxy
from toto.testing.server import free_port
from toto_redis import RedisStorage

REDIS_HOST = os.environ.get("TOTO_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TOTO_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("TOTO_TEST_REDIS_DB", "0"))

START_COMMAND = [
    "redis-server",
    "--daemonize", "yes",
    "--bind", "127.0.0.1", "-::1",
    "--port", str(REDIS_PORT),
    "--save", "",
    "--appendonly", "no",
    "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _answers(port: int, host: str = REDIS_HOST) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _wait_until(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def ensure_machine_redis() -> None:
    """Start the machine's Redis when it is down; fail (never skip) when it cannot be had."""
    if _answers(REDIS_PORT):
        return
    if shutil.which("redis-server") is None:
        pytest.fail(
            "Redis does not answer on 127.0.0.1:6379 and redis-server is not installed: apt-get install redis-server"
        )
    command = list(START_COMMAND)
    try:
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    except OSError:  # not root: let redis-server use its working directory and stdout
        command = command[: command.index("--dir")]
    subprocess.run(command, check=False, timeout=30)
    if not _wait_until(lambda: _answers(REDIS_PORT), 10):
        pytest.fail(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT} even after: {' '.join(START_COMMAND)}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    ensure_machine_redis()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


@pytest.fixture(scope="session")
def run_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of this test run; every key under it is deleted when the run ends."""
    prefix = f"toto-test:{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_keys(redis_url, prefix)


def delete_keys(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@pytest.fixture
def prefix(run_prefix: str) -> str:
    """A prefix of one test, so tests that reuse user ids never meet."""
    return f"{run_prefix}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def backend(redis_url: str, run_prefix: str) -> Backend:
    """The machine's Redis as the contract kit reaches it, also through its TCP proxy."""

    def at(address: tuple[str, int] | None) -> str:
        return redis_url if address is None else f"redis://{address[0]}:{address[1]}/{REDIS_DB}"

    return Backend(
        storage=lambda namespace, address: RedisStorage(at(address), namespace),
        server_options=lambda namespace, address: {
            "database": "redis",
            "database_url": at(address),
            "redis_prefix": namespace,
        },
        database=(REDIS_HOST, REDIS_PORT),
        namespace=lambda: f"{run_prefix}{uuid.uuid4().hex[:8]}:",
    )


class PrivateRedis:
    """A redis-server of one test, which it may stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _wait_until(lambda: _answers(self.port, "127.0.0.1"), 10):
            pytest.fail(f"a private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_seconds: float = 0.5) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    """A cuttable TCP proxy in front of the machine's Redis."""
    with TcpProxy(REDIS_HOST, REDIS_PORT) as running:
        yield running


def proxied_url(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
