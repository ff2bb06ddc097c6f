"""Toto against a bare Tornado baseline and its peers (aiohttp, FastAPI + uvicorn), under wrk.

``python bench/run.py [--quick] [--duration S] [--rounds N] [--only ROW,...]``

Every row is a server command plus its check: one server process (or one
``--processes=2`` group) on 127.0.0.1, whose answer is checked with ``toto.client`` and
the exact bytes wrk will send before any load, so a broken server cannot post a fast
number. Rows are loaded in interleaved rounds with the baseline between every two rows
(bench/harness.py); the table gives medians, the spread of the ratios to the baseline,
and CPU per request. JSON, Markdown and a PNG chart go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import harness
from harness import (
    ECHO,
    ECHO_PARAMETERS,
    Load,
    Row,
    Server,
    check,
    echo_prepare,
    free_port,
    granian_server,
    json_load,
    paired,
    python_server,
    uvicorn_server,
    wait_for_port,
)

HERE = Path(__file__).resolve().parent
APP = HERE / "app"

BATCH_SIZE = 10
SESSIONS = 20  # signed rows spread their load over this many signed-in users
PASSWORD = "bench-password"

POSTGRES_URL = os.environ.get("TOTO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TOTO_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("TOTO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TABLE_PREFIX = "totobench_"
BACKENDS = ("memory", "sqlite", "postgres", "mysql", "redis", "mongodb")
# Rows that also run on every HTTP transport ``toto serve --http`` offers beside Tornado.
TRANSPORT_ROWS = ("echo", "signed memory", "signed redis", f"batch of {BATCH_SIZE}")
# Rows that get a twin per --twins entry: the same row with one thing changed, in the same run.
# Their rows on each transport besides Tornado (``echo (granian)``...) and the socket rows get twins too.
TWIN_ROWS = ("echo", f"batch of {BATCH_SIZE}", "signed memory")


# -- what is installed ----------------------------------------------------------------------


def installed() -> tuple[dict[str, str], dict[str, str]]:
    """Storage names and wire content types the installed plugins register, each with the
    distribution that brings it (``toto-core`` for the built-ins)."""
    from toto.plugins import get_plugin_manager

    pm = get_plugin_manager()

    def distribution(plugin: object) -> str:
        return pm.label(plugin).split(" ")[0]

    storages = {
        name: distribution(plugin) for plugin, offered in pm.answers("toto_register_storage") for name in offered or {}
    }
    content_types = {
        content_type: distribution(plugin)
        for plugin, offered in pm.answers("toto_register_serializers")
        for serializer in offered or []
        for content_type in serializer.content_types
    }
    return storages, content_types


def plugins_env(storages: dict[str, str], options: dict[str, Any], extra: Iterable[str] = ()) -> dict[str, str]:
    """``TOTO_PLUGINS`` loading toto-core, the storage plugin of ``options``' database (from
    ``installed()``) and ``extra`` only: a row runs what it needs, as each peer does, whatever
    else is installed here."""
    from toto.plugins import CORE

    wanted = {CORE, storages.get(str(options.get("database", "memory")), CORE), *extra}
    return {"TOTO_PLUGINS": ",".join(sorted(wanted))}


def server_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "toto", "serve", "--help"], capture_output=True, text=True, cwd=APP, check=False
    )
    return out.stdout


def prefix_option(help_text: str, stem: str) -> str | None:
    """The plugin's table/collection prefix option (``--sql_..._prefix``), when it has one."""
    found = re.search(rf"--({stem}\w*prefix\w*)", help_text)
    return found.group(1) if found else None


def transports(help_text: str) -> list[str]:
    """The HTTP transports ``toto serve --http`` offers besides the default Tornado one."""
    found = re.search(r"^\s*--http\s.*\(([\w |]+)\) \[default", help_text, re.M)
    return [t.strip() for t in found.group(1).split("|") if t.strip() != "tornado"] if found else []


def pick_loop() -> str:
    from toto.server import pick_event_loop

    return pick_event_loop("auto")


# -- servers ----------------------------------------------------------------------------------


def toto_server(
    name: str, options: dict[str, Any], loop: str, children: int = 0, env: dict[str, str] | None = None
) -> Server:
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
    return Server([sys.executable, "-m", "toto", "serve", *args], port, APP, name, children=children, env=env)


@dataclass
class Twin:
    """What a twin row changes: server options, the environment (what Python imports), or
    plugins loaded beside the row's own."""

    label: str
    options: dict[str, Any]
    env: dict[str, str]
    plugins: tuple[str, ...] = ()


def parse_twins(text: str, stack: contextlib.ExitStack) -> list[Twin]:
    """``asyncio`` (the plain loop), ``stdlib-json`` (orjson hidden: the stdlib codec),
    ``checkout=PATH`` (toto-core from another checkout, e.g. main: before and after),
    ``with=toto-otel+toto-prometheus`` (those plugins loaded too: what an installed plugin
    costs)."""
    from toto.plugins import _entry_points as toto_entry_points
    from toto.plugins import canonical_name

    twins = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        if item == "asyncio":
            twins.append(Twin("asyncio loop", {"event_loop": "asyncio"}, {}))
        elif item == "stdlib-json":
            hidden = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="toto-bench-no-orjson-")))
            (hidden / "orjson.py").write_text('raise ImportError("hidden by the benchmark")\n')
            twins.append(Twin("stdlib json", {}, {"PYTHONPATH": str(hidden)}))
        elif item.startswith("checkout="):
            checkout = Path(item.split("=", 1)[1]).resolve()
            src = checkout / "toto_core" / "src"
            if not (src / "toto").is_dir():
                raise SystemExit(f"--twins {item}: no toto_core/src/toto under {checkout}")
            twins.append(Twin(checkout.name, {}, {"PYTHONPATH": str(src)}))
        elif item.startswith("with="):
            added = {canonical_name(n) for n in item.split("=", 1)[1].split("+") if n.strip()}
            available = {canonical_name(d.metadata["Name"] or e.name) for d, e in toto_entry_points()}
            if not added <= available:
                raise SystemExit(f"--twins {item}: not installed: {', '.join(sorted(added - available))}")
            twins.append(Twin(f"with {'+'.join(sorted(added))}", {}, {}, tuple(sorted(added))))
        else:
            raise SystemExit(f"--twins: unknown {item!r} (asyncio, stdlib-json, checkout=PATH, with=DIST+DIST)")
    return twins


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


# -- checks -----------------------------------------------------------------------------------


def envelope(method: str, parameters: Any) -> dict[str, Any]:
    return {"method": method, "parameters": parameters}


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


def socket_prepare(url: str) -> Load:
    """The socket answers an echo call (and HTTP still does); the load itself is socket_load.py's."""
    import asyncio

    from toto.client import AsyncTotoClient

    check_echo(url, ECHO)

    async def call() -> Any:
        async with await AsyncTotoClient(url).connect() as sock:
            return await sock.call("echo", ECHO_PARAMETERS)

    answer = asyncio.run(call())
    check(answer == ECHO_PARAMETERS, f"the socket echo answered {answer!r}")
    return ECHO


def toto_echo_prepare(url: str) -> Load:
    check_echo(url, ECHO)
    return ECHO


BATCH = json_load({"batch": {str(i): envelope("echo", ECHO_PARAMETERS) for i in range(BATCH_SIZE)}})


def batch_prepare(url: str) -> Load:
    check_batch(url, BATCH)
    return BATCH


@contextlib.contextmanager
def backend_options(backend: str, help_text: str) -> Iterator[dict[str, Any]]:
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


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Settings(harness.Settings):
    soak_requests: int
    soak_row: str
    only: set[str] | None
    twins: str


class Bench:
    """The rows of this run: baseline, peers, Toto's rows; started, checked, then measured."""

    def __init__(self, settings: Settings, stack: contextlib.ExitStack) -> None:
        self.s = settings
        self.stack = stack
        self.baseline = Row(
            "baseline (bare Tornado)",
            "baseline",
            "RequestHandler, same JSON work",
            python_server("baseline", "tornado_echo.py", settings.loop),
            echo_prepare,
        )
        self.rows: list[Row] = []
        self.soak: dict[str, Any] = {}
        # What each Toto row runs, so that a twin can run the same with one thing changed.
        self.specs: dict[str, tuple[str, dict[str, Any], Callable[[str], Load], str, tuple[str, ...] | None]] = {}
        self.storages: dict[str, str] = {}
        self.twin_pairs: list[tuple[Row, Row]] = []

    def wanted(self, name: str, kind: str = "") -> bool:
        only = self.s.only
        return only is None or name in only or name.split(" ")[0] in only or (kind == "peer" and "peers" in only)

    def add(self, row: Row) -> None:
        if self.wanted(row.name, row.kind):
            self.rows.append(row)

    def add_toto(
        self,
        name: str,
        kind: str,
        options: dict[str, Any],
        prepare: Callable[[str], Load],
        note: str,
        children: int = 0,
        plugins: tuple[str, ...] | None = (),
    ) -> None:
        """A Toto row; it loads toto-core and the storage plugin its ``database`` needs, plus
        ``plugins`` (None: every installed plugin)."""
        if self.wanted(name):
            env = plugins_env(self.storages, options, plugins) if plugins is not None else None
            loop = options.get("event_loop", self.s.loop)
            server = toto_server(name, options, loop, children=children, env=env)
            self.rows.append(Row(name, kind, note, server, prepare))
            self.specs[name] = (kind, options, prepare, note, plugins)

    def add_twins(self, twins: list[Twin]) -> None:
        """Each twin right after its row, so the two are loaded minutes apart at most."""
        rows: list[Row] = []
        for base in self.rows:
            rows.append(base)
            on_transport = base.note.startswith("--http=") and base.name.rsplit(" (", 1)[0] in TWIN_ROWS
            if base.name not in TWIN_ROWS and not on_transport and base.kind != "socket":
                continue
            kind, options, prepare, note, plugins = self.specs[base.name]
            for twin in twins:
                opts = {**options, **twin.options}
                name = f"{base.name} ({twin.label})"
                own = plugins_env(self.storages, opts, (*plugins, *twin.plugins)) if plugins is not None else {}
                env = {**own, **twin.env}
                server = toto_server(name, opts, opts.get("event_loop", self.s.loop), env=env)
                row = Row(name, "twin", f"{note}; {twin.label}", server, prepare)
                row.loader = base.loader  # a socket row's twin is loaded as its row is
                rows.append(row)
                self.twin_pairs.append((base, row))
        self.rows = rows

    def run(self) -> None:
        storages, content_types = installed()
        self.storages = storages
        if set(storages) & {"postgres", "mysql", "redis"}:
            # The machine's database servers: started when down, or the run fails (tests/services.py).
            services = HERE.parent / "tests" / "services.py"
            if services.exists() and subprocess.run([sys.executable, str(services)], check=False).returncode:
                raise SystemExit("database services are down and could not be started")
        help_text = server_help()
        loop = self.s.loop
        self.add(
            Row(
                "aiohttp",
                "peer",
                "web.Application route, request.json()",
                python_server("aiohttp", "aiohttp_echo.py", loop, "app"),
                echo_prepare,
            )
        )
        self.add(
            Row(
                "FastAPI + uvicorn",
                "peer",
                "Request.json(), JSONResponse; uvicorn[standard]",
                uvicorn_server("FastAPI + uvicorn", "fastapi_echo:app", loop),
                echo_prepare,
            )
        )
        self.add(
            Row(
                "Litestar + uvicorn",
                "peer",
                "Request.json(), a dict answered (msgspec); uvicorn[standard]",
                uvicorn_server("Litestar + uvicorn", "litestar_echo:app", loop),
                echo_prepare,
            )
        )
        self.add(
            Row(
                "bare granian RSGI (the ceiling)",
                "peer",
                "bench/servers/rsgi_echo.py: the same JSON work, nothing else; 1 worker",
                granian_server("bare granian RSGI", "rsgi_echo:app", "rsgi", loop),
                echo_prepare,
            )
        )
        self.add_toto("echo", "echo", {"database": "memory"}, toto_echo_prepare, "memory storage, no session")
        self.add_toto(
            "echo (every plugin)",
            "echo",
            {"database": "memory"},
            toto_echo_prepare,
            "echo with every installed plugin loaded (toto-prometheus's metrics among them)",
            plugins=None,
        )
        backend_opts: dict[str, dict[str, Any]] = {}
        for backend in BACKENDS:
            name = f"signed {backend}"
            if backend in storages and (self.wanted(name) or (backend == "redis" and transports(help_text))):
                opts = self.stack.enter_context(backend_options(backend, help_text))
                backend_opts[backend] = {"database": backend, **opts}
                self.add_toto(name, "signed", backend_opts[backend], signed_load, "whoami, user_id HMAC")
        self.add_toto(f"batch of {BATCH_SIZE}", "batch", {"database": "memory"}, batch_prepare, "10 echo calls")
        self.add_toto(
            "echo --processes=2",
            "processes",
            {"database": "memory", "processes": 2, "reuse_port": True},
            toto_echo_prepare,
            "reuse_port",
            children=2,
        )
        if "application/msgpack" in content_types:
            from toto.client import find_serializer

            body = find_serializer("msgpack").encode(envelope("echo", ECHO_PARAMETERS))
            packed = Load([body], [{"Content-Type": "application/msgpack"}])

            def msgpack_prepare(url: str) -> Load:
                check_echo(url, packed, "msgpack")
                return packed

            self.add_toto(
                "msgpack echo",
                "msgpack",
                {"database": "memory"},
                msgpack_prepare,
                "application/msgpack",
                plugins=(content_types["application/msgpack"],),
            )
        # Socket calls on one connection (50 in flight) and on 50 (one in flight each, as wrk's 50 connections).
        for connections, inflight in ((1, self.s.connections), (self.s.connections, 1)):
            name = f"socket echo x{connections}"
            if self.wanted(name) or self.wanted("socket"):
                opts = {"database": "memory", "use_web_sockets": True}
                server = toto_server(name, opts, self.s.loop, env=plugins_env(self.storages, opts))
                note = f"{connections} socket(s), {inflight} call(s) in flight each"
                row = Row(name, "socket", note, server, socket_prepare)
                row.loader = harness.socket_loader(connections, inflight)
                self.rows.append(row)
                self.specs[name] = ("socket", opts, socket_prepare, note, ())
        for transport in transports(help_text):
            for base in TRANSPORT_ROWS:
                backend = base.split(" ")[1] if base.startswith("signed") else "memory"
                if backend not in storages:
                    continue
                opts = {**backend_opts.get(backend, {"database": backend}), "http": transport}
                kind, prepare = (
                    ("signed", signed_load)
                    if base.startswith("signed")
                    else ("batch", batch_prepare)
                    if base.startswith("batch")
                    else ("echo", toto_echo_prepare)
                )
                self.add_toto(f"{base} ({transport})", kind, opts, prepare, f"--http={transport}")
            self.add_toto(
                f"echo --processes=2 ({transport})",
                "processes",
                {"database": "memory", "processes": 2, "reuse_port": True, "http": transport},
                toto_echo_prepare,
                f"reuse_port, --http={transport}",
                children=2,
            )
        self.add_twins(parse_twins(self.s.twins, self.stack))
        harness.start([self.baseline, *self.rows], self.stack)
        harness.measure(self.baseline, self.rows, self.s)
        echo = next((r for r in self.rows if r.name == "echo" and r.samples), None)
        for row in self.rows:
            if row.kind == "socket" and row.samples and echo is not None:
                # The same run's HTTP echo, round by round (each against its neighbouring baselines).
                row.extra["x_http_echo"] = round(row.ratio / echo.ratio, 3) if echo.ratio else None
                row.note += f"; x{row.extra['x_http_echo']:.2f} HTTP echo"
        self.run_soak(self.s.soak_row)

    def run_soak(self, name: str) -> None:
        """RSS growth over soak_requests requests on row ``name``, after its warm-up and rounds."""
        s = self.s
        row = next((r for r in self.rows if r.name == name and not r.failed), None)
        if row is None or s.soak_requests <= 0:
            return
        assert row.server is not None and row.load is not None
        before = row.server.rss()
        per_thread = -(-s.soak_requests // s.threads)
        seconds = s.soak_requests / max(row.rps, 1.0) * 1.5 + 2
        result = harness.run_wrk(row.server.url, row.load, seconds, s.threads, s.connections, stop_after=per_thread)
        after = row.server.rss()
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

    def finish(self) -> dict[str, Any]:
        rows = [self.baseline, *self.rows]
        return {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": harness.machine(),
            "settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in asdict(self.s).items()},
            "rows": [r.summary() for r in rows],
            "soak": self.soak,
            "targets": targets(rows, self.soak, self.s.connections),
            "twins": [
                {
                    "row": base.name,
                    "twin": twin.name,
                    "ratio": None if (v := paired(base, twin)) is None else round(v, 3),
                    "cpu_ratio": round(base.median("cpu_us") / twin.median("cpu_us"), 3) if twin.samples else None,
                }
                for base, twin in self.twin_pairs
            ],
        }


def targets(rows: list[Row], soak: dict[str, Any], connections: int) -> list[dict[str, Any]]:
    """The issues' targets, each with what was measured and whether it was met."""
    by_name = {r.name: r for r in rows if r.samples}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, met: bool | None) -> None:
        out.append({"target": name, "value": None if value is None else round(value, 2), "goal": goal, "met": met})

    def at_least(name: str, value: float | None, goal: float) -> None:
        add(name, value, f">= {goal}", None if value is None else value >= goal)

    def at_most(name: str, value: float | None, goal: float) -> None:
        add(name, value, f"<= {goal}", None if value is None else value <= goal)

    def ratio(row_name: str) -> float | None:
        row = by_name.get(row_name)
        return row.ratio if row else None

    # The fastest transport's echo (Tornado's until the ASGI transports exist).
    echoes = [r for r in rows if r.samples and (r.name == "echo" or r.name.startswith("echo ("))]
    echoes = [r for r in echoes if r.kind == "echo"]
    fast = max(echoes, key=lambda r: r.ratio, default=None)
    aiohttp, fastapi = by_name.get("aiohttp"), by_name.get("FastAPI + uvicorn")
    if fast is not None:
        at_least(f"{fast.name} / aiohttp (paired rounds)", paired(fast, aiohttp), 1.0)
        at_least(f"{fast.name} / FastAPI + uvicorn (the floor)", paired(fast, fastapi), 1.0)
        if aiohttp is not None:
            at_most(f"{fast.name} p99 / aiohttp p99", fast.p99_ms / aiohttp.p99_ms if aiohttp.p99_ms else None, 1.0)
    for backend in ("memory", "redis"):
        for name in [f"signed {backend}", *(r.name for r in rows if r.name.startswith(f"signed {backend} ("))]:
            if name in by_name and by_name[name].kind != "twin":
                at_least(f"{name} / FastAPI + uvicorn echo", paired(by_name[name], fastapi), 1.0)
    echo, batch = by_name.get("echo"), by_name.get(f"batch of {BATCH_SIZE}")
    at_most(f"time of a batch of {BATCH_SIZE} / one call", paired(echo, batch), 1.5)
    at_least("--processes=2 / one process", paired(by_name.get("echo --processes=2"), echo), 1.8)
    # Issue 28's goals, on each transport besides Tornado (granian: the ceiling is its bare RSGI echo).
    ceiling = by_name.get("bare granian RSGI (the ceiling)")
    on_transports = {r.note.split(";")[0][len("--http=") :] for r in rows if r.note.startswith("--http=")}
    for transport in sorted(on_transports):
        t_echo, t_batch = by_name.get(f"echo ({transport})"), by_name.get(f"batch of {BATCH_SIZE} ({transport})")
        if transport == "granian":
            at_least("echo (granian) / bare granian RSGI (paired rounds)", paired(t_echo, ceiling), 0.6)
        at_least(f"echo ({transport}) / aiohttp (paired rounds)", paired(t_echo, aiohttp), 1.5)
        at_most(f"time of a batch of {BATCH_SIZE} / one call ({transport})", paired(t_echo, t_batch), 1.5)
        two = by_name.get(f"echo --processes=2 ({transport})")
        at_least(f"--processes=2 / one process ({transport})", paired(two, t_echo), 1.8)
        signed = by_name.get(f"signed memory ({transport})")
        at_least(f"signed memory ({transport}) / FastAPI + uvicorn echo", paired(signed, fastapi), 2.0)
        signed = by_name.get(f"signed redis ({transport})")
        at_least(f"signed redis ({transport}) / FastAPI + uvicorn echo", paired(signed, fastapi), 1.2)
    at_least("echo / baseline", ratio("echo"), 1.0)
    at_least("signed redis / baseline", ratio("signed redis"), 0.8)
    at_least("signed sqlite / baseline", ratio("signed sqlite"), 0.6)
    at_least("signed postgres / baseline", ratio("signed postgres"), 0.6)
    toto = [r for r in rows if r.samples and r.kind not in ("baseline", "peer", "processes", "twin")]
    if toto:
        worst = max(toto, key=lambda r: r.p99_ms)
        over = [r.name for r in toto if r.p99_ms > 15]
        shown = f"p99 at {connections} connections, worst single-process Toto row ({worst.name}; ms)"
        if over:
            shown += f"; over 15 ms: {', '.join(over)}"
        at_most(shown, worst.p99_ms, 15)
    idle = [r.idle_rss_mb for r in rows if r.kind not in ("baseline", "peer", "processes", "twin") and r.idle_rss_mb]
    if idle:
        at_most("idle RSS after start (MB, largest Toto row)", max(idle), 60)
    postgres = by_name.get("signed postgres")
    if postgres is not None and postgres.idle_rss_mb:
        at_most("idle RSS of the server on PostgreSQL (MB)", postgres.idle_rss_mb, 60)
    if soak:
        add(f"RSS growth over {soak['requests']} requests (%)", soak["growth_pct"], "< 10", soak["growth_pct"] < 10)
    return out


def table(report: dict[str, Any]) -> str:
    lines = [*harness.header(report), "", *harness.rows_table(report["rows"])]
    soak = report["soak"]
    if soak:
        lines += [
            "",
            f"RSS growth on '{soak['row']}' over {soak['requests']} requests after warm-up: "
            f"{soak['rss_before_mb']} -> {soak['rss_after_mb']} MB ({soak['growth_pct']:+.1f}%)",
        ]
    if report["twins"]:
        lines += ["", "| row | twin | req/s row / twin (paired rounds) | CPU per request row / twin |"]
        lines.append("| --- | --- | ---: | ---: |")
        for x in report["twins"]:
            lines.append(f"| {x['row']} | {x['twin']} | {x['ratio']} | {x['cpu_ratio']} |")
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | --- | --- |"]
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else 'n/a'} | {t['goal']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_load_options(parser, rounds=5, quick="the whole benchmark in about two minutes")
    parser.add_argument("--soak", type=int, help="requests for the RSS growth check (default 200000, quick 20000)")
    parser.add_argument(
        "--soak-row", default="signed memory", help="the row the RSS growth check loads (e.g. 'signed postgres')"
    )
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop of every server"
    )
    parser.add_argument(
        "--only",
        help="comma-separated rows to run (e.g. echo,batch,signed redis; 'peers' for aiohttp and FastAPI); "
        "the baseline always runs",
    )
    parser.add_argument(
        "--twins",
        default="",
        help="comma-separated: asyncio, stdlib-json, checkout=PATH, with=DIST+DIST; each adds a twin of echo, "
        "batch, signed memory and the socket rows with that one change (the plain loop, orjson hidden, "
        "toto-core of another checkout, those plugins loaded too)",
    )
    args = parser.parse_args(argv)
    harness.ensure_wrk()
    harness.exit_on_sigterm()
    settings = Settings(
        **harness.load_settings(args, pick_loop() if args.loop == "auto" else args.loop),
        soak_requests=args.soak if args.soak is not None else (20_000 if args.quick else 200_000),
        soak_row=args.soak_row,
        only={x.strip() for x in args.only.split(",")} if args.only else None,
        twins=args.twins,
    )
    started = time.monotonic()
    print(f"Toto benchmark: {settings}", flush=True)
    with contextlib.ExitStack() as stack:
        bench = Bench(settings, stack)
        bench.run()
    report = bench.finish()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return harness.publish(report, table(report), "latest", "bench", "Toto, its peers and bare Tornado")


if __name__ == "__main__":
    raise SystemExit(main())
