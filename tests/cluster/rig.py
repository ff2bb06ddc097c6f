"""The deployment the fault suite runs on: three Toto servers on three hosts behind HAProxy, and a
data host with Redis (a primary, a replica, three Sentinels), a private PostgreSQL and a private
NATS (JetStream), every one a real process of this machine's Debian packages in the ``Lan``.

    machine (test process, HAProxy, TcpProxy)      10.226.0.1 ─┐
    h1 10.226.0.11  h2 .12  h3 .13  (toto serve :8080)          ├─ br0 (namespace t26-lan)
    data 10.226.0.14 (Redis :6379/:6380, Sentinels :26379-81,   │
                      PostgreSQL :5432, NATS :4222)             ─┘

HAProxy (the machine's namespace, 127.0.0.1) checks ``/_health`` every 0.5 s; h1's backend
address is a ``TcpProxy`` in front of h1, so that the delay fault slows that one link. When no
server is healthy HAProxy answers 503 with a 1013 envelope (its ``errorfile``), as Toto would
(the call did not run); a 502 or 504 (a server gone mid-call) is HAProxy's own page.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from toto.testing import TcpProxy

from tests.cluster.net import Lan

APP = Path(__file__).parent / "app"
TOTO_HOSTS = ["h1", "h2", "h3"]
DATA = "data"
TOTO_PORT = 8080
SERVICE = "toto"
#: Sentinel's ``down-after-milliseconds``.
DOWN_AFTER_MS = 1000
#: The newest PostgreSQL server binaries Debian installed (the private server's initdb, postgres).
PG_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda p: int(p.parent.name),
    default=Path("/usr/lib/postgresql/15/bin"),
)
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
#: Where the logs of the last run are kept (servers, Redis, Sentinels, PostgreSQL, NATS, HAProxy).
LOGS = Path(tempfile.gettempdir()) / "toto-cluster-logs"
#: The login limit of every server (``login_attempts``): one limit for the deployment, not three.
LOGIN_LIMIT = 5


class Timeout(AssertionError):
    pass


def wait_for(check: Callable[[], Any], seconds: float, what: str, logs: Callable[[], str] = lambda: "") -> Any:
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
    raise Timeout(f"{what} within {seconds:g} s (last: {last!r})\n{logs()}")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_health", timeout=2) as answer:  # noqa: S310 - http:// of the suite
            return bool(answer.status == 200)
    except OSError:
        return False


class NsProcess:
    """One process in a host's namespace, its output in ``log``."""

    def __init__(self, lan: Lan, host: str, argv: list[str], log: Path, cwd: Path | None = None) -> None:
        self.lan, self.host, self.argv, self.log, self.cwd = lan, host, argv, log, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NsProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.lan.ns(self.host), *self.argv],
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(15)

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 15) -> None:
        """``sig``, then SIGKILL if it has not exited within ``seconds``."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self, tail: int = 3000) -> str:
        try:
            return f"--- {self.log.name} ---\n" + self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


class Redis:
    """The primary (6379), the replica (6380) and three Sentinels (26379-26381) on the data host."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.address = rig.lan.hosts[DATA]
        self.min_replicas = 1
        self.nodes = {6379: self._node(6379, None), 6380: self._node(6380, 6379)}
        self.sentinels = [26379, 26380, 26381]
        self.sentinel_procs: list[NsProcess] = []

    def _node(self, port: int, replica_of: int | None) -> NsProcess:
        directory = self.rig.root / f"redis-{port}"
        directory.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            self.address,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        argv += ["--dir", str(directory), "--min-replicas-to-write", str(self.min_replicas)]
        argv += ["--min-replicas-max-lag", "5"]
        if replica_of is not None:
            argv += ["--replicaof", self.address, str(replica_of)]
        return NsProcess(self.rig.lan, DATA, argv, directory / "redis.log")

    def url(self) -> str:
        return f"redis+sentinel://{','.join(f'{self.address}:{port}' for port in self.sentinels)}/{SERVICE}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.address, port=port, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        for port in self.sentinels:
            directory = self.rig.root / f"sentinel-{port}"
            directory.mkdir(exist_ok=True)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind {self.address}\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor {SERVICE} {self.address} 6379 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 6000\n"
            )
            self.sentinel_procs.append(
                NsProcess(self.rig.lan, DATA, ["redis-server", str(config), "--sentinel"], directory / "log").start()
            )
        self.wait_settled(60)

    def failovers(self) -> int:
        """How many times the Sentinels switched the primary so far (one Sentinel's log)."""
        return self.sentinel_procs[0].output(10**7).count("+switch-master") if self.sentinel_procs else 0

    def min_replicas_to_write(self, replicas: int) -> None:
        """``min-replicas-to-write`` on both nodes, now and when one is started again."""
        self.min_replicas = replicas
        for port in self.nodes:
            with contextlib.closing(self.client(port)) as client:
                client.config_set("min-replicas-to-write", replicas)

    def primary_port(self) -> int:
        for port in self.sentinels:
            with contextlib.closing(self.client(port)) as client, contextlib.suppress(redis.RedisError, OSError):
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        raise Timeout("no Sentinel answers")

    def all_name_another_primary(self, old: int) -> bool:
        """Every Sentinel names a primary other than ``old``, the same one."""
        named = set()
        for port in self.sentinels:
            with contextlib.closing(self.client(port)) as client:
                named.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
        return len(named) == 1 and old not in named

    def primary(self) -> NsProcess:
        return self.nodes[self.primary_port()]

    def _settled(self) -> bool:
        """Sentinels agree on a primary that answers as one, with a replica in sync, seen by all."""
        primary = self.primary_port()
        with contextlib.closing(self.client(primary)) as client:
            replication = client.info("replication")
            if replication.get("role") != "master" or int(replication.get("connected_slaves", 0)) < 1:
                return False
        replica = 6380 if primary == 6379 else 6379
        with contextlib.closing(self.client(replica)) as client:
            if client.info("replication").get("master_link_status") != "up":
                return False
        for port in self.sentinels:
            with contextlib.closing(self.client(port)) as client:
                state = client.sentinel_master(SERVICE)
                if int(state["port"]) != primary or int(state["num-other-sentinels"]) < 2:
                    return False
                if int(state["num-slaves"]) < 1 or "down" in str(state.get("flags", "")):
                    return False
        return True

    def wait_settled(self, seconds: float) -> None:
        wait_for(
            self._settled, seconds, "Redis did not settle (a primary, its replica in sync, three Sentinels)", self.logs
        )

    def rejoin(self, port: int) -> None:
        """Start a killed node again as the current primary's replica."""
        primary = self.primary_port()
        node = self._node(port, primary)
        self.nodes[port] = node.start()
        wait_for(lambda: self.client(port).ping(), 15, f"redis {port} did not come back", self.logs)

    def logs(self) -> str:
        return "\n".join(p.output(1500) for p in (*self.nodes.values(), *self.sentinel_procs))

    def stop(self) -> None:
        for process in (*self.sentinel_procs, *self.nodes.values()):
            process.kill()


class Postgres:
    """A private PostgreSQL cluster (initdb as the postgres user) on the data host: restarting it
    touches no one else's database."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.address = rig.lan.hosts[DATA]
        self.data = rig.root / "pg"
        self.process: NsProcess | None = None

    def url(self) -> str:
        return f"postgresql://postgres@{self.address}:5432/postgres"

    def start(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise Timeout(f"no PostgreSQL server binaries in {PG_BIN}: apt-get install postgresql")
        owner = pwd.getpwnam("postgres")
        if not self.data.exists():
            self.data.mkdir()
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"),
                 "-A", "trust", "-U", "postgres", "-D", str(self.data)],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.address.rsplit('.', 1)[0]}.0/24 trust\n")
        self.process = NsProcess(
            self.rig.lan,
            DATA,
            # setpriv execs postgres itself (runuser would fork and keep our signals from it).
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
             str(PG_BIN / "postgres"), "-D", str(self.data),
             "-c", f"listen_addresses={self.address}", "-c", "port=5432",
             "-c", f"unix_socket_directories={self.data}", "-c", "max_connections=200"],
            self.rig.root / "pg.log",
        ).start()  # fmt: skip
        wait_for(lambda: reachable(self.address, 5432), 60, "PostgreSQL did not listen", self.logs)

    def restart(self) -> None:
        """A fast shutdown (what ``pg_ctl restart -m fast`` does), then start again."""
        assert self.process is not None
        self.process.stop(signal.SIGINT, 60)
        wait_for(
            lambda: not reachable(self.address, 5432), 30, "PostgreSQL still listens after its shutdown", self.logs
        )
        self.start()

    def logs(self) -> str:
        return self.process.output() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGINT, 20)


class Nats:
    """A private nats-server with JetStream (its store on disk) on the data host."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.address = rig.lan.hosts[DATA]
        self.process: NsProcess | None = None

    def url(self) -> str:
        return f"nats://{self.address}:4222"

    def start(self) -> None:
        if not os.path.exists(NATS_SERVER):
            raise Timeout("nats-server is not installed: apt-get install nats-server")
        argv = [NATS_SERVER, "-a", self.address, "-p", "4222", "-js", "-sd", str(self.rig.root / "nats")]
        self.process = NsProcess(self.rig.lan, DATA, argv, self.rig.root / "nats.log").start()
        wait_for(lambda: reachable(self.address, 4222), 30, "nats-server did not listen", self.logs)

    def restart(self) -> None:
        assert self.process is not None
        self.process.stop(signal.SIGTERM, 20)
        wait_for(
            lambda: not reachable(self.address, 4222), 30, "nats-server still listens after its shutdown", self.logs
        )
        self.start()

    def logs(self) -> str:
        return self.process.output() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


HAPROXY = """global
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 15s
    timeout queue 5s
    # A request that never reached a server goes to another one (never one a server may have run).
    retries 2
    retry-on conn-failure
    option redispatch
    # 503: no server took the call, so it did not run: the protocol's 1013. A 502 or 504 (a
    # server went away or went silent mid-call) keeps HAProxy's own page: the call may have run.
    errorfile 503 {errorfile}
frontend toto
    bind 127.0.0.1:{port}
    default_backend servers
backend servers
    balance roundrobin
    option httpchk GET /_health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""

ERRORFILE = (
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
)


class Rig:
    """The whole deployment; ``options`` are the Toto servers' (the stack: storage and bus)."""

    def __init__(self, lan: Lan) -> None:
        self.lan = lan
        self.root = Path(tempfile.mkdtemp(prefix="toto-cluster-"))
        # The private PostgreSQL runs as the postgres user: it must reach its directory in here.
        os.chmod(self.root, 0o755)  # noqa: S103 - a test directory of root's, read-only to others
        self.redis = Redis(self)
        self.postgres = Postgres(self)
        self.nats = Nats(self)
        self.servers: dict[str, NsProcess] = {}
        self.options: dict[str, Any] = {}
        self.h1_proxy = TcpProxy(lan.hosts["h1"], TOTO_PORT, host="127.0.0.1")
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.lb_port = 0

    # -- the data host ---------------------------------------------------------------------------
    def start_data(self) -> None:
        self.redis.start()
        self.postgres.start()
        self.nats.start()

    # -- the Toto servers ------------------------------------------------------------------------
    def server_url(self, host: str) -> str:
        return f"http://{self.lan.hosts[host]}:{TOTO_PORT}"

    def start_server(self, host: str) -> None:
        options = {
            "address": self.lan.hosts[host],
            "port": TOTO_PORT,
            "method_module": "cluster_methods",
            "event_init_module": "cluster_feed",
            "password_cost": 10,
            "login_attempts": LOGIN_LIMIT,
            # Every client comes through one address here (HAProxy's): the per-address limits,
            # meant for many addresses, would soon refuse the whole load.
            "login_address_calls": 0,
            "login_address_attempts": 0,
            "hmac_mode": "session_key",
            "drain_timeout": 2,
            **self.options,
        }
        argv = [sys.executable, "-m", "toto", "serve", *(f"--{k}={v}" for k, v in options.items())]
        self.servers[host] = NsProcess(self.lan, host, argv, self.root / f"{host}.log", cwd=APP).start()

    def wait_server(self, host: str, seconds: float = 60) -> None:
        server = self.servers[host]

        def up() -> bool:
            if not server.alive():
                raise Timeout(f"the server on {host} exited\n{server.output()}")
            return healthy(self.server_url(host))

        wait_for(up, seconds, f"the server on {host} did not become healthy", server.output)

    def start_servers(self, options: dict[str, Any]) -> None:
        """(Re)start the three servers with ``options`` and wait until HAProxy sees them healthy."""
        for server in self.servers.values():
            server.stop()
        self.options = dict(options)
        for host in TOTO_HOSTS:
            self.start_server(host)
        for host in TOTO_HOSTS:
            self.wait_server(host)
        self.wait_balanced()

    # -- HAProxy ---------------------------------------------------------------------------------
    def start_balancer(self) -> None:
        if shutil.which("haproxy") is None:
            raise Timeout("haproxy is not installed: apt-get install haproxy")
        self.h1_proxy.start()
        errorfile = self.root / "503.http"
        envelope = {"error": {"code": 1013, "value": "No server can take the call now; try again"}}
        errorfile.write_text(ERRORFILE + json.dumps(envelope) + "\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.lb_port = probe.getsockname()[1]
        lines = [f"    server h1 127.0.0.1:{self.h1_proxy.port} check"]
        lines += [f"    server {h} {self.lan.hosts[h]}:{TOTO_PORT} check" for h in TOTO_HOSTS[1:]]
        config = self.root / "haproxy.cfg"
        config.write_text(HAPROXY.format(port=self.lb_port, errorfile=errorfile, servers="\n".join(lines)))
        self.haproxy_log = self.root / "haproxy.log"
        with open(self.haproxy_log, "ab") as out:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: reachable("127.0.0.1", self.lb_port), 20, "HAProxy did not listen", self.logs)

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def wait_balanced(self, seconds: float = 60) -> None:
        """Every server healthy, and each answers through HAProxy (round robin reaches all three)."""

        def all_up() -> bool:
            if not all(healthy(self.server_url(h)) for h in TOTO_HOSTS):
                return False
            return all(healthy(self.lb_url) for _ in range(6))

        wait_for(all_up, seconds, "HAProxy did not see every server healthy", self.logs)

    def logs(self) -> str:
        parts = [server.output() for server in self.servers.values()]
        with contextlib.suppress(OSError):
            parts.append("--- haproxy ---\n" + Path(self.haproxy_log).read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        for server in self.servers.values():
            server.kill()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.kill()
            self.haproxy.wait(10)
        with contextlib.suppress(Exception):
            self.h1_proxy.stop()
        self.nats.stop()
        self.postgres.stop()
        self.redis.stop()
        # The logs of the last run stay for a reader (a failed run names them); the data goes.
        shutil.rmtree(LOGS, ignore_errors=True)
        LOGS.mkdir(parents=True)
        for log in [*self.root.glob("*.log"), *self.root.glob("*/*.log"), *self.root.glob("*/log")]:
            shutil.copy(log, LOGS / "-".join(log.relative_to(self.root).parts))
        shutil.rmtree(self.root, ignore_errors=True)
