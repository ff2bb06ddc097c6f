"""Private Redis deployments of one test: a primary with a replica watched by three Sentinels,
and a Redis Cluster of primaries with a replica each, all real ``redis-server`` processes on free
ports in temporary directories, killed when the test ends.

Every wait is on a condition with a deadline; a deployment that does not come up fails the test
with the servers' own logs.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

SERVICE = "toto"
#: Sentinel's ``down-after-milliseconds``: how long a silent primary is given before a failover.
DOWN_AFTER_MS = 1000


def wait_for(check: Callable[[], Any], seconds: float, what: str, logs: Callable[[], str] = lambda: "") -> Any:
    """Poll ``check()`` until it is truthy (its value is returned); fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (redis.RedisError, OSError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds:g} s (last: {last!r})\n{logs()}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """``count`` ports free now (each with port + 10000 free too when ``with_bus``: a Cluster
    node's bus), below the kernel's ephemeral range (32768 and up), so that no outgoing
    connection takes one before its server binds it; another test may still, which
    ``start_with_retries`` survives."""
    found: list[int] = []
    while len(found) < count:
        port = random.randrange(10000, 22000)
        if port in found or not _port_free(port) or (with_bus and not _port_free(port + 10000)):
            continue
        found.append(port)
    return found


class PortTaken(Exception):
    """A server could not bind its port: someone took it between the probe and the start."""


def start_with_retries(build: Callable[[], Any], attempts: int = 5) -> Any:
    """``build().start()`` on fresh ports until no port was taken in between."""
    for attempt in range(attempts):
        group = build()
        try:
            return group.start()
        except PortTaken:
            group.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class RedisProcess:
    """One ``redis-server`` (or Sentinel) of a test, with its own directory and log."""

    def __init__(self, port: int, directory: Path, args: list[str], *, sentinel: bool = False) -> None:
        self.port = port
        self.directory = directory
        self.args = args
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    def start(self) -> RedisProcess:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", *self.args]
        if self.sentinel:
            command.append("--sentinel")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up_or_gone, 15, f"redis-server on port {self.port} did not answer", self.output)
        if self.proc.poll() is not None:
            if "Address already in use" in self.output():
                raise PortTaken(self.port)
            pytest.fail(f"redis-server on port {self.port} exited with {self.proc.returncode}\n{self.output()}")
        return self

    def _up_or_gone(self) -> bool:
        return self.proc is not None and (self.proc.poll() is not None or self.answers())

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=2, **kw)

    def answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        with contextlib.closing(self.client()) as client:
            try:
                return bool(client.ping())
            except (redis.RedisError, OSError):
                return False

    def kill(self) -> None:
        """SIGKILL: the process has no chance to tell anyone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        try:
            return f"--- {self.log} ---\n" + self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _server_args(port: int, *extra: str) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]


class SentinelGroup:
    """A primary, a replica and three Sentinels (quorum 2) watching them as ``SERVICE``."""

    def __init__(self, min_replicas_to_write: int = 0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="toto-sentinel-"))
        primary, replica, *sentinels = free_ports(5)
        # A primary with fewer good replicas refuses writes (NOREPLICAS) instead of taking them unconfirmed.
        self.extra = ["--min-replicas-to-write", str(min_replicas_to_write), "--min-replicas-max-lag", "5"]
        self.primary = RedisProcess(primary, self.root / "primary", _server_args(primary, *self.extra))
        self.replica = RedisProcess(
            replica,
            self.root / "replica",
            _server_args(replica, *self.extra, "--replicaof", "127.0.0.1", str(primary)),
        )
        self.sentinels = [RedisProcess(port, self.root / f"sentinel-{port}", [], sentinel=True) for port in sentinels]
        self.killed: list[RedisProcess] = []

    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{SERVICE}/{db}"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.directory.mkdir(parents=True)
            config = sentinel.directory / "sentinel.conf"
            config.write_text(
                f"port {sentinel.port}\nbind 127.0.0.1\ndir {sentinel.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 6000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel.args = [str(config)]
            sentinel.start()
        wait_for(self._ready, 30, "the Sentinels did not see the replica and each other", self.logs)
        return self

    def _ready(self) -> bool:
        with contextlib.closing(self.replica.client()) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            with contextlib.closing(sentinel.client()) as client:
                state = client.sentinel_master(SERVICE)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def primary_port(self) -> int:
        """The primary's port as the Sentinels answer it now."""
        for sentinel in self.sentinels:
            if sentinel in self.killed:
                continue
            with contextlib.closing(sentinel.client()) as client, contextlib.suppress(redis.RedisError, OSError):
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        raise AssertionError("no Sentinel answers")

    def wait_replicated(self, seconds: float = 20) -> None:
        """Return once the replica holds every write the primary has taken (``WAIT``), so that
        a test killing the primary next loses nothing to asynchronous replication (a lag that
        a loaded machine makes long)."""
        current = self.primary if self.primary.port == self.primary_port() else self.replica
        with contextlib.closing(current.client()) as client:
            acked = client.execute_command("WAIT", 1, int(seconds * 1000))
        assert int(acked) >= 1, f"the replica did not take the primary's writes within {seconds:g}s"

    def kill_primary(self) -> RedisProcess:
        """SIGKILL the primary; the Sentinels promote the replica about ``DOWN_AFTER_MS`` later."""
        current = self.primary if self.primary.port == self.primary_port() else self.replica
        current.kill()
        self.killed.append(current)
        return current

    def rejoin(self, node: RedisProcess) -> None:
        """Start a killed node again as the current primary's replica (what the Sentinels would
        make of it too, on their next look at it, which can take ten seconds)."""
        node.args = _server_args(node.port, *self.extra, "--replicaof", "127.0.0.1", str(self.primary_port()))
        node.start()
        self.killed.remove(node)

    def wait_for_failover(self, away_from: RedisProcess, seconds: float = 30) -> RedisProcess:
        """Wait until every live Sentinel names another primary, which answers as a primary."""
        promoted = self.replica if away_from is self.primary else self.primary

        def done() -> bool:
            if self.primary_port() != promoted.port:
                return False
            with contextlib.closing(promoted.client()) as client:
                return client.info("replication").get("role") == "master"

        wait_for(done, seconds, "the Sentinels did not fail over", self.logs)
        return promoted

    def logs(self) -> str:
        return "\n".join(p.output() for p in (self.primary, self.replica, *self.sentinels))

    def stop(self) -> None:
        for process in (*self.sentinels, self.replica, self.primary):
            process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisClusterGroup:
    """A Redis Cluster of ``primaries`` primaries with one replica each (``redis-cli --cluster create``)."""

    def __init__(self, primaries: int = 3) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="toto-cluster-"))
        ports = free_ports(primaries * 2, with_bus=True)
        self.primaries = primaries
        self.nodes = [
            RedisProcess(
                port,
                self.root / str(port),
                _server_args(
                    port,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(DOWN_AFTER_MS),
                    "--cluster-require-full-coverage", "no",
                    "--cluster-allow-reads-when-down", "no",
                    # A replica takes over however long it was cut off (a loaded machine may delay its sync).
                    "--cluster-replica-validity-factor", "0",
                ),
            )
            for port in ports
        ]  # fmt: skip
        self.killed: list[RedisProcess] = []

    def url(self, scheme: str = "redis+cluster") -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        self.cli(
            "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas", "1", "--cluster-yes",
        )  # fmt: skip
        wait_for(self._healthy, 30, "the cluster did not become healthy", self.logs)
        return self

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["redis-cli", *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ, LANG="C")
        )
        if done.returncode != 0:
            pytest.fail(f"redis-cli {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self.logs()}")
        return done.stdout

    def live(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node not in self.killed]

    def _healthy(self) -> bool:
        """Every live node sees the cluster ok, and every live replica is in sync with its primary."""
        for node in self.live():
            with contextlib.closing(node.client()) as client:
                info = client.cluster("info")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.live()):
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
        return True

    def primaries_now(self) -> list[RedisProcess]:
        """The live nodes that are primaries now."""
        primaries = []
        for node in self.live():
            with contextlib.closing(node.client()) as client:
                if client.info("replication").get("role") == "master":
                    primaries.append(node)
        return primaries

    def owner_of(self, key: str) -> RedisProcess:
        """The live node that serves ``key``'s slot as a primary now."""
        with contextlib.closing(self.live()[0].client()) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def node_id(self, node: RedisProcess) -> str:
        with contextlib.closing(node.client()) as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())

    def kill(self, node: RedisProcess) -> None:
        node.kill()
        self.killed.append(node)

    def wait_for_failover(self, away_from: RedisProcess, key: str, seconds: float = 30) -> RedisProcess:
        """Wait until ``key``'s slot is served by a live primary other than ``away_from``, and the cluster is ok."""

        def moved() -> RedisProcess | None:
            owner = self.owner_of(key)
            return owner if owner is not away_from and owner not in self.killed and self._healthy() else None

        return wait_for(moved, seconds, f"the cluster did not fail {key!r}'s slot over", self.logs)  # type: ignore[no-any-return]

    def logs(self) -> str:
        return "\n".join(node.output() for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
