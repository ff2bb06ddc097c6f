"""What bench/run.py and bench/ceilings.py share: server processes, wrk, interleaved rounds.

A row is a server command plus its check: ``Row(name, Server(command, port, ...),
prepare)`` where ``prepare(url)`` checks one answer and returns the ``Load`` wrk
repeats. ``measure`` loads the rows in rounds with the baseline between every two
rows; each row's ratio in a round is its req/s over the mean of the baseline loads
just before and just after it, so a drift of the machine (other work starting or
stopping) moves both and cancels. A row reports the median of its rounds and their
spread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"

ECHO_PARAMETERS = {"message": "hello, toto", "n": 42, "items": [1, 2, 3], "nested": {"ok": True}}


# -- processes ------------------------------------------------------------------------------


def exit_on_sigterm() -> None:
    """A SIGTERM (``kill``, a CI timeout) exits through the ``with`` blocks, so every server
    started is stopped; they run in sessions of their own and would outlive the run."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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


class Server:
    """A server process on ``port`` of 127.0.0.1, stopped (with its children) on exit.

    ``children`` is the number of serving child processes to wait for (a
    ``--processes=2`` group, granian's workers); memory is then theirs, not the
    supervisor's. CPU time is always counted over the whole process tree.
    """

    def __init__(
        self,
        command: list[str],
        port: int,
        cwd: Path,
        name: str,
        children: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.port = port
        self.cwd = cwd
        self.name = name
        self.children = children
        self.env = env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="toto-bench-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            self.command, cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(self.port, self.proc, self.name)
            if self.children:
                self._wait_for_children(self.children)
        except Exception:
            print(self.output(), file=sys.stderr)
            self.__exit__()
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
        time.sleep(1.0)  # the children bind the shared port only once their servers started

    def _tree(self) -> list[Any]:
        import psutil

        assert self.proc is not None
        proc = psutil.Process(self.proc.pid)
        return [proc, *proc.children(recursive=True)]

    def rss(self) -> float:
        """Resident MB of the serving processes (the children of a group)."""
        tree = self._tree()
        procs = tree[1:] if self.children else tree[:1]
        return sum(p.memory_info().rss for p in procs) / (1024 * 1024)

    def cpu_seconds(self) -> float:
        """User and system CPU time of the whole process tree so far."""
        total = 0.0
        for p in self._tree():
            with contextlib.suppress(Exception):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The whole session: a supervisor's children (granian's workers) go with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def python_server(name: str, script: str, *args: str, children: int = 0) -> Server:
    """One of bench/servers/*.py, given its port first."""
    port = free_port()
    return Server([sys.executable, str(SERVERS / script), str(port), *args], port, SERVERS, name, children=children)


def uvicorn_server(name: str, app: str, loop: str) -> Server:
    """``uvicorn[standard]`` (httptools, and uvloop when ``loop`` is) serving ``app`` from bench/servers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--loop", loop, "--http", "httptools", "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    return Server(command, port, SERVERS, name)


def granian_server(name: str, app: str, interface: str, loop: str) -> Server:
    """granian (one worker) serving ``app`` from bench/servers over ``interface`` (asgi or rsgi)."""
    port = free_port()
    command = [sys.executable, "-m", "granian", "--interface", interface, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--loop", loop, "--http", "1", "--no-ws", "--log-level", "warning", app]
    return Server(command, port, SERVERS, name, children=1)


# -- wrk --------------------------------------------------------------------------------------


@dataclass
class Load:
    """One HTTP request that wrk repeats (several: wrk cycles through them)."""

    bodies: list[bytes]
    headers: list[dict[str, str]]
    path: str = "/"


def json_load(obj: Any) -> Load:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Load([body], [{"Content-Type": "application/json"}])


ECHO = json_load({"method": "echo", "parameters": ECHO_PARAMETERS})


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
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        out = subprocess.run([*cmd, "-s", script, url], capture_output=True, text=True, check=False)
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


def socket_loader(
    connections: int, inflight: int, path: str = "/websocket"
) -> Callable[[str, float, Settings], WrkResult]:
    """Loads a socket row with bench/socket_load.py: ``connections`` sockets, ``inflight`` echo
    calls in flight on each, split over ``threads`` processes as wrk splits its connections."""

    def load(url: str, seconds: float, s: Settings) -> WrkResult:
        target = url.replace("http://", "ws://", 1) + path
        command = [
            sys.executable, str(HERE / "socket_load.py"), target, f"--connections={connections}",
            f"--inflight={inflight}", f"--seconds={seconds:g}", f"--processes={s.threads}",
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds * 4 + 60)
        line = next((x for x in out.stdout.splitlines() if x.startswith("SOCKJSON ")), None)
        if line is None:
            raise RuntimeError(f"socket_load failed ({out.returncode}): {out.stdout}\n{out.stderr[-2000:]}")
        data = json.loads(line[len("SOCKJSON ") :])
        secs = data["seconds"]
        return WrkResult(
            requests=data["calls"],
            seconds=secs,
            rps=data["calls"] / secs if secs else 0.0,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            errors=data["errors"],
        )

    return load


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


# -- checks -----------------------------------------------------------------------------------


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


def echo_prepare(url: str) -> Load:
    """A bare server or peer answers the echo request with ``{"result": parameters}``."""
    status, data = post(url, ECHO)
    check(status == 200, f"echo answered HTTP {status}: {data[:200]!r}")
    check(json.loads(data) == {"result": ECHO_PARAMETERS}, f"echo answered {data[:200]!r}")
    return ECHO


# -- rows and rounds --------------------------------------------------------------------------


@dataclass
class Sample:
    """One measured load of one row."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time (the whole process tree) per answered request
    errors: int
    requests: int
    ratio: float = 0.0  # to the mean of the baseline loads just before and after


@dataclass
class Row:
    """A server command (``server``) plus its check (``prepare``), and what was measured."""

    name: str
    kind: str  # baseline | peer | ceiling | echo | signed | batch | processes | msgpack | ...
    note: str = ""
    server: Server | None = field(default=None, repr=False)
    prepare: Callable[[str], Load] | None = field(default=None, repr=False)
    load: Load | None = field(default=None, repr=False)
    failed: str = ""  # why the row could not be measured (it is then not loaded)
    idle_rss_mb: float = 0.0
    loaded_rss_mb: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Loads the row instead of wrk (socket rows: ``socket_loader``): (url, seconds, settings) -> WrkResult.
    loader: Callable[[str, float, Settings], WrkResult] | None = field(default=None, repr=False)

    def median(self, name: str) -> float:
        values = [getattr(s, name) for s in self.samples]
        return statistics.median(values) if values else 0.0

    @property
    def rps(self) -> float:
        return self.median("rps")

    @property
    def ratio(self) -> float:
        return self.median("ratio")

    @property
    def p99_ms(self) -> float:
        return self.median("p99_ms")

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)

    def summary(self) -> dict[str, Any]:
        ratios = [s.ratio for s in self.samples]
        return {
            "name": self.name,
            "kind": self.kind,
            "note": self.note,
            "failed": self.failed,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.median("p50_ms"), 2),
            "p99_ms": round(self.p99_ms, 2),
            "cpu_us": round(self.median("cpu_us"), 1),
            "ratio": round(self.ratio, 3),
            "ratio_min": round(min(ratios), 3) if ratios else 0.0,
            "ratio_max": round(max(ratios), 3) if ratios else 0.0,
            "errors": self.errors,
            "requests": sum(s.requests for s in self.samples),
            "idle_rss_mb": round(self.idle_rss_mb, 1),
            "loaded_rss_mb": round(self.loaded_rss_mb, 1),
            "samples": [asdict(s) for s in self.samples],
            **self.extra,
        }


@dataclass
class Settings:
    threads: int
    connections: int
    duration: float
    warmup: float
    rounds: int
    loop: str


def add_load_options(parser: argparse.ArgumentParser, rounds: int, quick: str) -> None:
    """The options of every load: --quick, --duration, --warmup, --rounds, --connections, --threads."""
    parser.add_argument("--quick", action="store_true", help=f"short runs ({quick})")
    parser.add_argument("--duration", type=float, help="seconds of load per row and round (default 5, quick 1)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of warm-up per server before round 1 (default 3, quick 1)"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"interleaved rounds; rows report their median (default {rounds}, quick 2)"
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.set_defaults(default_rounds=rounds)


def load_settings(args: argparse.Namespace, loop: str) -> dict[str, Any]:
    """``Settings`` fields from the options of ``add_load_options``."""
    return {
        "threads": args.threads,
        "connections": args.connections,
        "duration": args.duration or (1.0 if args.quick else 5.0),
        "warmup": args.warmup or (1.0 if args.quick else 3.0),
        "rounds": args.rounds or (2 if args.quick else args.default_rounds),
        "loop": loop,
    }


def start(rows: list[Row], stack: contextlib.ExitStack) -> None:
    """Start each row's server and check its answer; a row that fails is reported, not loaded."""
    for row in rows:
        assert row.server is not None and row.prepare is not None
        try:
            server = stack.enter_context(row.server)
            row.load = row.prepare(server.url)
        except Exception as exc:
            row.failed = f"{type(exc).__name__}: {exc}"
            print(f"  FAILED: {row.name}: {row.failed}", file=sys.stderr, flush=True)
            continue
        row.idle_rss_mb = server.rss()
        print(f"  ready: {row.name} ({server.url}, idle RSS {row.idle_rss_mb:.1f} MB)", flush=True)


def load_once(row: Row, s: Settings) -> Sample:
    assert row.server is not None and row.load is not None
    cpu_before = row.server.cpu_seconds()
    if row.loader is not None:
        result = row.loader(row.server.url, s.duration, s)
    else:
        result = run_wrk(row.server.url, row.load, s.duration, s.threads, s.connections)
    cpu = row.server.cpu_seconds() - cpu_before
    row.loaded_rss_mb = max(row.loaded_rss_mb, row.server.rss())
    return Sample(
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_us=cpu / result.requests * 1e6 if result.requests else 0.0,
        errors=result.errors,
        requests=result.requests,
    )


def show(row: Row, sample: Sample) -> None:
    print(
        f"  {row.name:<30} {sample.rps:>8.0f} req/s  p50 {sample.p50_ms:6.2f}  p99 {sample.p99_ms:6.2f} ms  "
        f"{sample.cpu_us:6.1f} us CPU/req"
        + (f"  x{sample.ratio:.2f}" if sample.ratio else "")
        + (f"  ERRORS {sample.errors}" if sample.errors else ""),
        flush=True,
    )


def measure(baseline: Row, rows: list[Row], s: Settings) -> None:
    """Warm every server up once, then ``s.rounds`` rounds: baseline, row, baseline, row, ..., baseline."""
    live = [r for r in [baseline, *rows] if not r.failed]
    if baseline.failed:
        raise SystemExit(f"the baseline failed: {baseline.failed}")
    print(f"warm-up: {s.warmup:g} s each", flush=True)
    for row in live:
        assert row.server is not None and row.load is not None
        if row.loader is not None:
            row.loader(row.server.url, s.warmup, s)
        else:
            run_wrk(row.server.url, row.load, s.warmup, s.threads, s.connections)
    for round_ in range(1, s.rounds + 1):
        print(f"round {round_} of {s.rounds}", flush=True)
        before = load_once(baseline, s)
        baseline.samples.append(before)
        show(baseline, before)
        # Alternate the order, so no row always follows the same neighbour.
        order = live[1:] if round_ % 2 else live[:0:-1]
        for row in order:
            sample = load_once(row, s)
            after = load_once(baseline, s)
            sample.ratio = sample.rps / ((before.rps + after.rps) / 2) if before.rps + after.rps else 0.0
            row.samples.append(sample)
            baseline.samples.append(after)
            show(row, sample)
            before = after
    reference = statistics.median(x.rps for x in baseline.samples)
    for sample in baseline.samples:
        # The baseline against its own median: how far the machine drifted during the run.
        sample.ratio = sample.rps / reference if reference else 0.0


def paired(a: Row | None, b: Row | None) -> float | None:
    """Median over rounds of a's ratio over b's (both to the same round's baselines)."""
    if not a or not b or not a.samples or not b.samples:
        return None
    pairs = [x.ratio / y.ratio for x, y in zip(a.samples, b.samples) if y.ratio]
    return statistics.median(pairs) if pairs else None


# -- output -----------------------------------------------------------------------------------


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
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """Versions of the servers and codecs measured (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("toto-core", "tornado", "uvloop", "orjson", "aiohttp", "fastapi", "uvicorn", "httptools", "granian"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def header(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    m = report["machine"]
    shown = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [
        f"wrk {s['threads']} threads, {s['connections']} connections, {s['duration']:g} s per load, "
        f"{s['rounds']} interleaved rounds (baseline between rows) after a {s['warmup']:g} s warm-up; "
        f"event loop {s['loop']}; {report['when']}",
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['os']}, load average at start "
        f"{m['load_average_at_start'][0]}; {shown}",
    ]


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| row | req/s | p50 ms | p99 ms | CPU us/req | x baseline | spread | idle RSS MB | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        note = r["note"] + (f"; {r['errors']} errors" if r["errors"] else "")
        if r["failed"]:
            lines.append(f"| {r['name']} | failed | | | | | | | {r['failed'][:100]} |")
            continue
        lines.append(
            f"| {r['name']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us']:.0f} | "
            f"{r['ratio']:.2f} | {r['ratio_min']:.2f}-{r['ratio_max']:.2f} | {r['idle_rss_mb']:.1f} | {note} |"
        )
    return lines


def chart(report: dict[str, Any], path: Path, title: str) -> bool:
    """Median ratio to the baseline per row, with the spread of the rounds as whiskers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    rows = [r for r in report["rows"] if not r["failed"]][::-1]
    palette = {"baseline": "#888888", "peer": "#d08a2a", "ceiling": "#d08a2a"}
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.5))
    ratios = [r["ratio"] for r in rows]
    low = [r["ratio"] - r["ratio_min"] for r in rows]
    high = [r["ratio_max"] - r["ratio"] for r in rows]
    ax.barh(
        [r["name"] for r in rows],
        ratios,
        xerr=[low, high],
        color=[palette.get(r["kind"], "#2a7ab0") for r in rows],
        error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#333333"},
    )
    for i, r in enumerate(rows):
        ax.text(r["ratio_max"], i, f"  {r['ratio']:.2f}x  {r['rps']:.0f}/s", va="center", fontsize=8)
    ax.axvline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_xlabel("req/s over the bare Tornado baseline, median of interleaved rounds (whiskers: min-max)")
    m = report["machine"]
    ax.set_title(f"{title}: {m['cores']} cores, Python {m['python']}, {report['settings']['loop']}", fontsize=10)
    ax.set_xlim(0, max(r["ratio_max"] for r in rows) * 1.35 if rows else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save(report: dict[str, Any], text: str, latest: str, kind: str, title: str) -> Path:
    """``bench/results/{latest}.json|md|png`` plus ``{kind}-{time}`` copies (the folder is git-ignored)."""
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"{kind}-{stamp}.json", f"{latest}.json"):
        (results / name).write_text(json.dumps(report, indent=2) + "\n")
    (results / f"{latest}.md").write_text(text + "\n")
    if chart(report, results / f"{latest}.png", title):
        shutil.copy(results / f"{latest}.png", results / f"{kind}-{stamp}.png")
    return results


def publish(report: dict[str, Any], text: str, latest: str, kind: str, title: str) -> int:
    """Print the table, save the results, and the exit status: 1 when a row failed or answered errors."""
    print()
    print(text)
    results = save(report, text, latest, kind, title)
    print(f"\nresults: {results}/{latest}.json, {latest}.md, {latest}.png ({report.get('elapsed_s', '?')} s)")
    failed = [r["name"] for r in report["rows"] if r["errors"] or r["failed"]]
    if failed:
        print(f"rows that failed or answered errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
