"""Toto against a bare Tornado baseline, under wrk, in one run.

``python bench/run.py [--quick] [--duration S] [--connections N] [--only ROW,...]``

Every row is one server process (or one ``--processes=2`` group) on 127.0.0.1, loaded
by wrk with the same threads, connections and duration after a short warm-up. Each
Toto row first checks one answer (result and response signature) with ``toto.client``
and the exact bytes wrk will send, so a broken server cannot post a fast number.
The table gives req/s, p50 and p99 and the ratio to the baseline measured in the same
run; JSON and a PNG chart go to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "app"
RESULTS = HERE / "results"

ECHO_PARAMETERS = {"message": "hello, toto", "n": 42, "items": [1, 2, 3], "nested": {"ok": True}}
BATCH_SIZE = 10
SESSIONS = 20  # signed rows spread their load over this many signed-in users
PASSWORD = "bench-password"

POSTGRES_URL = os.environ.get("TOTO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TOTO_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("TOTO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TABLE_PREFIX = "totobench_"


# -- what is installed ----------------------------------------------------------------------


def installed() -> tuple[set[str], set[str]]:
    """Storage names and wire content types the installed plugins register."""
    from toto.plugins import get_plugin_manager, merge_named, merge_serializers

    pm = get_plugin_manager()
    return set(merge_named(pm, "toto_register_storage")), set(merge_serializers(pm))


def server_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "toto", "serve", "--help"], capture_output=True, text=True, cwd=APP, check=False
    )
    return out.stdout


def prefix_option(help_text: str, stem: str) -> str | None:
    """The plugin's table/collection prefix option (``--sql_..._prefix``), when it has one."""
    found = re.search(rf"--({stem}\w*prefix\w*)", help_text)
    return found.group(1) if found else None


def pick_loop() -> str:
    from toto.server import pick_event_loop

    return pick_event_loop("auto")


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def rss_mb(pid: int, children: bool = False) -> float:
    """Resident memory of ``pid`` (with ``children``: of its children, the serving processes)."""
    import psutil

    proc = psutil.Process(pid)
    procs = proc.children() if children else [proc]
    return sum(p.memory_info().rss for p in procs) / (1024 * 1024)


class Server:
    """A server process on a free port of 127.0.0.1."""

    def __init__(self, command: list[str], port: int, cwd: Path, name: str, group: bool = False) -> None:
        self.command = command
        self.port = port
        self.cwd = cwd
        self.name = name
        self.group = group
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="toto-bench-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.proc, self.name)
            if self.group:
                self._wait_for_children(2)
        except Exception:
            self.__exit__()
            print(self.output(), file=sys.stderr)
            raise
        return self

    def _wait_for_children(self, count: int, timeout: float = 60.0) -> None:
        import psutil

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while len(psutil.Process(self.proc.pid).children()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {count} children did not start")
            time.sleep(0.1)
        time.sleep(1.0)  # both children bound the shared port only once their servers started

    def rss(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid, children=self.group)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def toto_server(name: str, options: dict[str, Any], loop: str, group: bool = False) -> Server:
    port = free_port()
    opts = {
        "address": "127.0.0.1",
        "port": port,
        "method_module": "methods",
        "logging": "warning",
        "password_cost": 10,
        "drain_timeout": 1,
        "event_loop": loop,
        **options,
    }
    args = [f"--{k}={'true' if v is True else 'false' if v is False else v}" for k, v in opts.items()]
    return Server([sys.executable, "-m", "toto", "serve", *args], port, APP, name, group=group)


def baseline_server(loop: str) -> Server:
    port = free_port()
    return Server([sys.executable, str(HERE / "baseline_server.py"), str(port), loop], port, HERE, "baseline")


@contextlib.contextmanager
def mongo_standin() -> Iterator[str]:
    """The MongoDB stand-in (SecantusDB) in its own process on a free port, in a temporary directory."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="toto-bench-mongo-") as data:
        code = (
            "import sys, threading\n"
            "from secantus import SecantusDBServer\n"
            "server = SecantusDBServer(host='127.0.0.1', port=int(sys.argv[1]), storage_path=sys.argv[2])\n"
            "server.start()\n"
            "threading.Event().wait()\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, str(port), data])
        try:
            wait_for_port(port, proc, "the MongoDB stand-in (secantus)")
            yield f"mongodb://127.0.0.1:{port}/totobench"
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- wrk ----------------------------------------------------------------------------------------


@dataclass
class Load:
    """One HTTP request that wrk repeats (several: wrk cycles through them)."""

    bodies: list[bytes]
    headers: list[dict[str, str]]
    path: str = "/"


def lua_string(data: bytes) -> str:
    """A Lua string literal holding exactly ``data`` (binary safe)."""
    out = []
    for byte in data:
        ch = chr(byte)
        if 32 <= byte < 127 and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,\\"mean_us\\":%f," ..
    "\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(load: Load, stop_after: int | None = None) -> str:
    """A wrk script that cycles through ``load``'s requests and prints its summary as JSON."""
    lines = ["local reqs = {}", "init = function(args)"]
    for body, headers in zip(load.bodies, load.headers):
        hdr = ", ".join(f"[{lua_string(k.encode())}] = {lua_string(v.encode())}" for k, v in headers.items())
        # wrk.init has set wrk.headers.Host by now; a table of our own must carry it too.
        hdr += ', ["Host"] = wrk.headers["Host"]'
        lines.append(f'  reqs[#reqs + 1] = wrk.format("POST", "{load.path}", {{{hdr}}}, {lua_string(body)})')
    lines.append("end")
    lines.append("local i = 0")
    lines.append("request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend")
    if stop_after is not None:
        lines.append(
            f"local n = 0\nresponse = function(status, headers, body)\n"
            f"  n = n + 1\n  if n >= {stop_after} then wrk.thread:stop() end\nend"
        )
    return "\n".join(lines) + "\n" + DONE


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(
    url: str, load: Load, seconds: float, threads: int, connections: int, stop_after: int | None = None
) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(load, stop_after))
        script = f.name
    try:
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script,
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(script)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    secs = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
    )


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("wrk is missing; installing the Debian package", flush=True)
    sudo = ["sudo"] if os.geteuid() != 0 and shutil.which("sudo") else []
    apt = [*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=300"]
    install = [*apt, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, check=False).returncode != 0:
        # A fresh machine may not have package lists yet.
        subprocess.run([*apt, "update", "-q"], check=False)
        subprocess.run(install, check=False)
    if not shutil.which("wrk"):
        raise SystemExit("wrk could not be installed; install it (Debian/Ubuntu: apt-get install wrk)")


# -- rows -----------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    kind: str  # baseline | echo | signed | batch | processes | msgpack
    note: str = ""
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    requests: int = 0
    ratio: float = 0.0
    failed: str = ""  # why the row could not be measured (it is then not loaded)
    idle_rss_mb: float = 0.0
    loaded_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def envelope(method: str, parameters: Any) -> dict[str, Any]:
    return {"method": method, "parameters": parameters}


def json_load(obj: Any) -> Load:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Load([body], [{"Content-Type": "application/json"}])


def check(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"correctness check failed: {what}")


def post(url: str, load: Load) -> tuple[int, bytes]:
    """Send the first request of ``load`` as wrk would."""
    import http.client

    conn = http.client.HTTPConnection(url.split("//", 1)[1], timeout=30)
    try:
        conn.request("POST", load.path, body=load.bodies[0], headers=load.headers[0])
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_echo(url: str, load: Load, serializer: str = "json") -> None:
    """The exact bytes wrk sends answer the echoed parameters (decoded with ``serializer``)."""
    from toto.client import TotoClient, find_serializer

    codec = find_serializer(serializer)
    with TotoClient(url, serializer=serializer) as client:
        status, headers, data = client.request(load.bodies[0], headers=load.headers[0], sign=False)
    check(status == 200, f"echo answered HTTP {status}: {data[:200]!r}")
    check(codec.decode(data) == {"result": ECHO_PARAMETERS}, f"echo answered {data[:200]!r}")


def check_batch(url: str, load: Load) -> None:
    from toto.client import TotoClient

    with TotoClient(url) as client:
        status, headers, data = client.request(load.bodies[0], headers=load.headers[0], sign=False)
        answers = client.batch({str(i): ("echo", ECHO_PARAMETERS) for i in range(BATCH_SIZE)})
    expected = {str(i): {"result": ECHO_PARAMETERS} for i in range(BATCH_SIZE)}
    check(status == 200 and json.loads(data) == {"batch": expected}, f"batch answered {data[:200]!r}")
    check(answers == {k: ECHO_PARAMETERS for k in expected}, "batch through the client")


def signed_load(url: str) -> Load:
    """Sign in SESSIONS users with toto.client; one fixed signed ``whoami`` request each.

    user_id signing covers exactly the body bytes (``toto.signing.user_id_hmac``), so a
    fixed body with its headers stays valid for every repetition. Each request is sent
    once here and its answer checked: the result and the response's HMAC.
    """
    from toto.client import TotoClient
    from toto.signing import user_id_hmac

    run = secrets.token_hex(4)
    body = json.dumps(envelope("whoami", {}), separators=(",", ":")).encode()
    bodies, headers = [], []
    for i in range(SESSIONS):
        user = f"bench-{run}-{i}@example.com"
        with TotoClient(url) as client:
            client.create(user, PASSWORD)
            check(client.call("whoami") == {"user_id": user}, "whoami through the client")
            assert client.session is not None
            sent = {
                "Content-Type": "application/json",
                "x-toto-session-id": client.session["session_id"],
                "x-toto-hmac": user_id_hmac(user, body),
            }
            status, answer_headers, data = client.request(body, headers=sent, sign=False)
        check(status == 200, f"signed whoami answered HTTP {status}: {data[:200]!r}")
        check(json.loads(data).get("result") == {"user_id": user}, f"signed whoami answered {data[:200]!r}")
        check(answer_headers.get("x-toto-hmac") == user_id_hmac(user, data), "the response HMAC")
        bodies.append(body)
        headers.append(sent)
    return Load(bodies, headers)


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Settings:
    threads: int
    connections: int
    duration: float
    warmup: float
    soak_requests: int
    rounds: int
    loop: str
    only: set[str] | None


class Bench:
    """Starts every row's server, checks one answer of each, then loads them in rounds.

    All servers start before any load and stay up (idle) until the end; each round
    loads every row in turn and a row keeps its best round. On a machine shared with
    other work this keeps a burst of someone else's load from deciding a ratio.
    """

    def __init__(self, settings: Settings, stack: contextlib.ExitStack) -> None:
        self.s = settings
        self.stack = stack
        self.rows: list[Row] = []
        self.targets: list[tuple[Row, Server, Load]] = []
        self.soak: dict[str, Any] = {}

    def wanted(self, name: str) -> bool:
        return self.s.only is None or name in self.s.only or name.split(" ")[0] in self.s.only

    def add(self, row: Row, server: Server, prepare: Callable[[str], Load]) -> None:
        """Start ``row``'s server and check its answer; a row that fails is reported, not loaded."""
        self.rows.append(row)
        try:
            server = self.stack.enter_context(server)
            load = prepare(server.url)
        except Exception as exc:
            row.failed = f"{type(exc).__name__}: {exc}"
            print(f"  FAILED: {row.name}: {row.failed}", file=sys.stderr, flush=True)
            return
        row.idle_rss_mb = server.rss()
        print(f"  ready: {row.name} ({server.url}, idle RSS {row.idle_rss_mb:.1f} MB)", flush=True)
        self.targets.append((row, server, load))

    def add_toto(
        self,
        name: str,
        kind: str,
        options: dict[str, Any],
        prepare: Callable[[str], Load],
        note: str = "",
        group: bool = False,
    ) -> None:
        if self.wanted(name):
            self.add(Row(name, kind, note), toto_server(name, options, self.s.loop, group=group), prepare)

    def measure_all(self) -> None:
        s = self.s
        for round_ in range(1, s.rounds + 1):
            print(f"round {round_} of {s.rounds}", flush=True)
            for row, server, load in self.targets:
                run_wrk(server.url, load, s.warmup, s.threads, s.connections)
                result = run_wrk(server.url, load, s.duration, s.threads, s.connections)
                row.loaded_rss_mb = max(row.loaded_rss_mb, server.rss())
                row.errors += result.errors
                row.requests += result.requests
                row.extra.setdefault("rounds_rps", []).append(round(result.rps))
                if result.rps > row.rps:
                    row.rps, row.p50_ms, row.p99_ms = result.rps, result.p50_ms, result.p99_ms
                print(
                    f"  {row.name:<28} {result.rps:>9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms" + (f"  ERRORS {result.errors}" if result.errors else ""),
                    flush=True,
                )

    def run_soak(self, name: str) -> None:
        """RSS growth over soak_requests requests on row ``name``, from after its warm-up and rounds."""
        s = self.s
        found = [(r, srv, load) for r, srv, load in self.targets if r.name == name]
        if not found or s.soak_requests <= 0:
            return
        row, server, load = found[0]
        before = server.rss()
        per_thread = -(-s.soak_requests // s.threads)
        seconds = s.soak_requests / max(row.rps, 1.0) * 1.5 + 2
        result = run_wrk(server.url, load, seconds, s.threads, s.connections, stop_after=per_thread)
        after = server.rss()
        self.soak = {
            "row": row.name,
            "requests": result.requests,
            "errors": result.errors,
            "rss_before_mb": round(before, 1),
            "rss_after_mb": round(after, 1),
            "growth_pct": round((after - before) / before * 100, 1),
        }
        print(
            f"  soak on {row.name}: {result.requests} requests, RSS {before:.1f} -> {after:.1f} MB "
            f"({self.soak['growth_pct']:+.1f}%)",
            flush=True,
        )

    def run(self) -> None:
        storages, content_types = installed()
        if storages & {"postgres", "mysql", "redis"}:
            # The machine's database servers: started when down, or the run fails (tests/services.py).
            services = HERE.parent / "tests" / "services.py"
            if services.exists() and subprocess.run([sys.executable, str(services)], check=False).returncode:
                raise SystemExit("database services are down and could not be started")
        help_text = server_help()
        echo = json_load(envelope("echo", ECHO_PARAMETERS))

        def baseline_prepare(url: str) -> Load:
            status, data = post(url, echo)
            check(status == 200 and json.loads(data) == {"result": ECHO_PARAMETERS}, f"baseline answered {data!r}")
            return echo

        self.add(
            Row("baseline (bare Tornado)", "baseline", "RequestHandler, same JSON work"),
            baseline_server(self.s.loop),
            baseline_prepare,
        )

        def echo_prepare(url: str) -> Load:
            check_echo(url, echo)
            return echo

        self.add_toto("echo", "echo", {"database": "memory"}, echo_prepare, "memory storage, no session")
        for backend in ("memory", "sqlite", "postgres", "mysql", "redis", "mongodb"):
            name = f"signed {backend}"
            if backend in storages and self.wanted(name):
                opts = self.stack.enter_context(self.backend_options(backend, help_text))
                self.add_toto(name, "signed", {"database": backend, **opts}, signed_load, "whoami, user_id HMAC")

        batch = json_load({"batch": {str(i): envelope("echo", ECHO_PARAMETERS) for i in range(BATCH_SIZE)}})

        def batch_prepare(url: str) -> Load:
            check_batch(url, batch)
            return batch

        self.add_toto(f"batch of {BATCH_SIZE}", "batch", {"database": "memory"}, batch_prepare, "10 echo calls")
        self.add_toto(
            "echo --processes=2",
            "processes",
            {"database": "memory", "processes": 2, "reuse_port": True},
            echo_prepare,
            "reuse_port",
            group=True,
        )
        if "application/msgpack" in content_types:
            from toto.client import find_serializer

            body = find_serializer("msgpack").encode(envelope("echo", ECHO_PARAMETERS))
            packed = Load([body], [{"Content-Type": "application/msgpack"}])

            def msgpack_prepare(url: str) -> Load:
                check_echo(url, packed, "msgpack")
                return packed

            self.add_toto("msgpack echo", "msgpack", {"database": "memory"}, msgpack_prepare, "application/msgpack")

        self.measure_all()
        self.run_soak("signed memory")

    @contextlib.contextmanager
    def backend_options(self, backend: str, help_text: str) -> Iterator[dict[str, Any]]:
        if backend == "memory":
            yield {}
        elif backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="toto-bench-sqlite-") as tmp:
                yield {"database_url": f"sqlite:///{tmp}/bench.db"}
        elif backend in ("postgres", "mysql"):
            opts = {"database_url": POSTGRES_URL if backend == "postgres" else MYSQL_URL}
            option = prefix_option(help_text, "sql")
            if option:
                opts[option] = TABLE_PREFIX
            yield opts
        elif backend == "redis":
            yield {"database_url": REDIS_URL, "redis_prefix": "totobench:"}
        elif backend == "mongodb":
            with mongo_standin() as url:
                opts = {"database_url": url}
                option = prefix_option(help_text, "mongo")
                if option:
                    opts[option] = TABLE_PREFIX
                yield opts
        else:
            raise ValueError(backend)

    # -- output -------------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        base = next((r for r in self.rows if r.kind == "baseline"), None)
        for row in self.rows:
            row.ratio = row.rps / base.rps if base and base.rps else 0.0
        return {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(),
            "settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in asdict(self.s).items()},
            "rows": [asdict(r) for r in self.rows],
            "soak": self.soak,
            "targets": targets(self.rows, self.soak, self.s.connections),
        }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import tornado

        tornado_version = tornado.version
    except ImportError:
        tornado_version = "?"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tornado": tornado_version,
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in load],
        "wrk": wrk_version.split("[", 1)[0].split("Copyright", 1)[0].strip(),
    }


def targets(rows: list[Row], soak: dict[str, Any], connections: int) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured and whether it was met."""
    by_name = {r.name: r for r in rows}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, met: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": met})

    def ratio(row_name: str, goal: float) -> None:
        row = by_name.get(row_name)
        add(
            f"{row_name} / baseline",
            round(row.ratio, 2) if row else None,
            f">= {goal}",
            row.ratio >= goal if row else None,
        )

    ratio("echo", 1.0)
    ratio("signed redis", 0.8)
    ratio("signed sqlite", 0.6)
    ratio("signed postgres", 0.6)
    toto = [r for r in rows if r.kind not in ("baseline", "processes") and not r.failed]
    if toto:
        worst = max(toto, key=lambda r: r.p99_ms)
        over = [r.name for r in toto if r.p99_ms > 15]
        shown = f"p99 at {connections} connections, worst single-process Toto row ({worst.name}; ms)"
        if over:
            shown += f"; over 15 ms: {', '.join(over)}"
        add(shown, round(worst.p99_ms, 2), "<= 15", worst.p99_ms <= 15)
    echo, batch = by_name.get("echo"), by_name.get(f"batch of {BATCH_SIZE}")
    if echo and batch and batch.rps:
        times = echo.rps / batch.rps
        add(f"time of a batch of {BATCH_SIZE} / one call", round(times, 2), "<= 2", times <= 2)
    group = by_name.get("echo --processes=2")
    if echo and group and echo.rps:
        scale = group.rps / echo.rps
        add("--processes=2 / one process", round(scale, 2), ">= 1.6", scale >= 1.6)
    idle = [r.idle_rss_mb for r in rows if r.kind not in ("baseline", "processes") and r.idle_rss_mb]
    if idle:
        add("idle RSS after start (MB, largest Toto row)", round(max(idle), 1), "<= 60", max(idle) <= 60)
    if soak:
        add(f"RSS growth over {soak['requests']} requests (%)", soak["growth_pct"], "< 10", soak["growth_pct"] < 10)
    return out


def table(report: dict[str, Any]) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"wrk {s['threads']} threads, {s['connections']} connections, {s['duration']:g} s per row after "
        f"{s['warmup']:g} s warm-up, best of {s['rounds']} rounds; event loop {s['loop']}; {report['when']}",
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Tornado {m['tornado']}, {m['os']}, "
        f"load average at start {m['load_average_at_start'][0]}",
        "",
        "| row | req/s | p50 ms | p99 ms | x baseline | idle RSS MB | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["rows"]:
        note = r["note"] + (f"; {r['errors']} errors" if r["errors"] else "")
        if r["failed"]:
            lines.append(f"| {r['name']} | failed | | | | | {r['failed'][:100]} |")
            continue
        lines.append(
            f"| {r['name']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['ratio']:.2f} | "
            f"{r['idle_rss_mb']:.1f} | {note} |"
        )
    soak = report["soak"]
    if soak:
        lines += [
            "",
            f"RSS growth on '{soak['row']}' over {soak['requests']} requests after warm-up: "
            f"{soak['rss_before_mb']} -> {soak['rss_after_mb']} MB ({soak['growth_pct']:+.1f}%)",
        ]
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | --- | --- |"]
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else 'n/a'} | {t['goal']} | {met} |")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    rows = report["rows"]
    names = [r["name"] for r in rows]
    values = [r["rps"] for r in rows]
    colors = ["#888888" if r["kind"] == "baseline" else "#2a7ab0" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
    for bar, r in zip(bars, rows[::-1]):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            " failed" if r["failed"] else f" {r['rps']:.0f}  ({r['ratio']:.2f}x)",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("requests per second (higher is better)")
    m = report["machine"]
    ax.set_title(
        f"Toto vs bare Tornado: {m['cores']} cores, Python {m['python']}, {report['settings']['loop']}", fontsize=10
    )
    ax.set_xlim(0, max(values) * 1.3 if values else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (the whole benchmark in under two minutes)")
    parser.add_argument("--duration", type=float, help="seconds of load per row and round (default 10, quick 2)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per row (default 3, quick 1)")
    parser.add_argument(
        "--rounds", type=int, help="rounds over every row; each row keeps its best (default 3, quick 2)"
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--soak", type=int, help="requests for the RSS growth check (default 200000, quick 20000)")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop of every server"
    )
    parser.add_argument(
        "--only", help="comma-separated rows to run (e.g. echo,batch,signed redis); baseline always runs"
    )
    args = parser.parse_args(argv)
    ensure_wrk()
    loop = pick_loop() if args.loop == "auto" else args.loop
    settings = Settings(
        threads=args.threads,
        connections=args.connections,
        duration=args.duration or (2.0 if args.quick else 10.0),
        warmup=args.warmup or (1.0 if args.quick else 3.0),
        soak_requests=args.soak if args.soak is not None else (20_000 if args.quick else 200_000),
        rounds=args.rounds or (2 if args.quick else 3),
        loop=loop,
        only={x.strip() for x in args.only.split(",")} if args.only else None,
    )
    started = time.monotonic()
    print(f"Toto benchmark: {settings}", flush=True)
    with contextlib.ExitStack() as stack:
        bench = Bench(settings, stack)
        bench.run()
    report = bench.finish()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    text = table(report)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(text + "\n")
    if chart(report, RESULTS / "latest.png"):
        shutil.copy(RESULTS / "latest.png", RESULTS / f"bench-{stamp}.png")
    print(f"\nresults: {RESULTS}/latest.json, latest.md, latest.png ({report['elapsed_s']} s)")
    failed = [r["name"] for r in report["rows"] if r["errors"] or r["failed"]]
    if failed:
        print(f"rows that failed or answered errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
