"""Where a Toto server spends its time under wrk: py-spy samples, grouped by layer.

``python bench/profile.py ROW [--http NAME] [--seconds S] [--rate HZ] [--checkout PATH]`` starts the
benchmark's server for ROW (echo, batch, signed-memory, signed-redis, socket-x1, socket-x50, or
ceiling: the bare granian RSGI app), loads it as bench/run.py does (wrk, 2 threads, 50
connections; the socket rows with bench/socket_load.py) and records it with ``py-spy record
--format raw`` for the same time. The samples (collapsed stacks,
``bench/results/profile-ROW.txt``) are summed two ways:

- own time: the innermost Python frame of each sample (time in C code, a socket send
  or the C JSON encoder, counts for the Python function that called it);
- inclusive time: every function on the sample's stack;
- by layer (Tornado's HTTP layer, the event loop, JSON, Toto, the Redis client,
  other), own (the innermost frame's layer) and inclusive (any frame of the layer).

The summary goes to ``bench/results/profile-ROW.md``. An SVG flame graph of the same
samples: ``py-spy record --format flamegraph -o out.svg --pid PID``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import run

# The layer of a frame, by its file: the first pattern that matches wins.
LAYERS = [
    ("JSON codec", re.compile(r"(^|/)(json/|orjson|toto/serializers\.py)")),
    ("Toto", re.compile(r"(^|/)toto(_\w+)?/")),
    (
        "Tornado HTTP layer",
        re.compile(r"tornado/(http1connection|iostream|httputil|httpserver|tcpserver|netutil|escape|web|routing)\.py"),
    ),
    ("event loop (asyncio, uvloop, Tornado's IOLoop)", re.compile(r"(^|/)(asyncio/|uvloop|tornado/)")),
    ("Redis client", re.compile(r"(^|/)redis/")),
]
# Innermost frames of a thread waiting for work, which py-spy's blocking sampler can take
# for running: left out, and counted as idle in the summary.
IDLE = re.compile(r"^(_worker \(concurrent/futures/thread\.py|wait \(threading\.py|select \(selectors\.py)")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:(?P<line>\d+))?\)$")


def layer(file: str) -> str:
    return next((name for name, pattern in LAYERS if pattern.search(file)), "other")


def short(file: str) -> str:
    """``tornado/iostream.py`` rather than the whole site-packages path."""
    for marker in ("site-packages/", "/lib/python3", "/src/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "/lib/python3":
                file = file.split("/", 1)[1]
            break
    return file


@dataclass
class Profile:
    """Samples summed by function and by layer, own (innermost frame) and inclusive (on the stack).

    Inclusive sums leave out the entry frames (``main``, the loop's ``run``: on the
    stack of nearly every sample), so a layer's inclusive share is the time spent in
    or below its frames from the event loop's callbacks on.
    """

    total: int = 0
    idle: int = 0
    entry: list[str] = field(default_factory=list)
    own: collections.Counter[str] = field(default_factory=collections.Counter)
    inclusive: collections.Counter[str] = field(default_factory=collections.Counter)
    layer_own: collections.Counter[str] = field(default_factory=collections.Counter)
    layer_inclusive: collections.Counter[str] = field(default_factory=collections.Counter)


ENTRY_SHARE = 0.85  # a frame on the stack of this share of the samples is an entry frame


def summarize(collapsed: str) -> Profile:
    samples: list[tuple[list[tuple[str, str]], int]] = []
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = []
        for text in stack.split(";"):
            found = FRAME.match(text)
            if found and not text.startswith(("process ", "thread ")):
                frames.append((f"{found['function']} ({short(found['file'])})", layer(found["file"])))
        if frames:
            samples.append((frames, int(count_text)))
    idle = sum(count for frames, count in samples if IDLE.match(frames[-1][0]))
    samples = [(frames, count) for frames, count in samples if not IDLE.match(frames[-1][0])]
    profile = Profile(total=sum(count for _, count in samples), idle=idle)
    on_stack: collections.Counter[str] = collections.Counter()
    for frames, count in samples:
        for name in {name for name, _ in frames}:
            on_stack[name] += count
    entry = {name for name, count in on_stack.items() if count >= ENTRY_SHARE * profile.total}
    profile.entry = sorted(entry)
    for frames, count in samples:
        profile.own[frames[-1][0]] += count
        profile.layer_own[frames[-1][1]] += count
        inner = [(name, kind) for name, kind in frames if name not in entry]
        for name in {name for name, _ in inner}:
            profile.inclusive[name] += count
        for kind in {kind for _, kind in inner}:
            profile.layer_inclusive[kind] += count
    return profile


def report(row: str, p: Profile, command: str, top: int = 20) -> str:
    lines = [
        f"py-spy profile of the '{row}' row under wrk: {p.total} samples "
        f"({p.idle} of idle threads left out); `{command}`",
        "",
    ]
    lines += ["| layer | own (innermost frame) | inclusive (on the stack) |", "| --- | ---: | ---: |"]
    for name, count in p.layer_own.most_common():
        lines.append(f"| {name} | {count / p.total:.0%} | {p.layer_inclusive[name] / p.total:.0%} |")
    lines += ["", "| own time (innermost Python frame) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {count / p.total:.1%} |" for name, count in p.own.most_common(top)]
    lines += ["", "| inclusive time (the function anywhere on the stack) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {count / p.total:.1%} |" for name, count in p.inclusive.most_common(top)]
    lines += ["", f"Entry frames left out of the inclusive sums: {', '.join(f'`{x}`' for x in p.entry)}."]
    return "\n".join(lines)


def from_file(path: Path, row: str) -> str:
    """The summary of collapsed stacks recorded earlier (``--summarize FILE``)."""
    return report(row, summarize(path.read_text()), "(recorded earlier)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "row", choices=("echo", "batch", "signed-memory", "signed-redis", "socket-x1", "socket-x50", "ceiling")
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--checkout", type=Path, help="profile toto-core of another checkout (e.g. /work/main)")
    parser.add_argument("--http", default="tornado", help="the server's transport (toto serve --http)")
    parser.add_argument(
        "--with", dest="plugins", default="", help="plugins to load beside the row's own, e.g. toto-prometheus"
    )
    args = parser.parse_args(argv)
    env = {}
    label = args.row if args.http == "tornado" else f"{args.row}-{args.http}"
    if args.checkout:
        src = args.checkout.resolve() / "toto_core" / "src"
        if not (src / "toto").is_dir():
            raise SystemExit(f"no toto_core/src/toto under {args.checkout}")
        env = {"PYTHONPATH": str(src)}
        label = f"{label}-{args.checkout.resolve().name}"
    harness.ensure_wrk()
    harness.exit_on_sigterm()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install -r bench/requirements.txt")
    loop = run.pick_loop()
    settings = harness.Settings(threads=2, connections=50, duration=0, warmup=0, rounds=1, loop=loop)
    # What loads the row: wrk, or (socket rows) bench/socket_load.py as bench/run.py loads them.
    loader = None
    with contextlib.ExitStack() as stack:
        if args.row == "ceiling":
            # The bare RSGI app on granian (bench/run.py's ceiling row): the same JSON work, nothing else.
            server = stack.enter_context(harness.granian_server("ceiling", "rsgi_echo:app", "rsgi", loop))
            prepare = harness.echo_prepare
        else:
            if args.row in ("echo", "signed-memory", "socket-x1", "socket-x50"):
                options, prepare = {"database": "memory"}, run.toto_echo_prepare
            elif args.row == "batch":
                options, prepare = {"database": "memory"}, run.batch_prepare
            else:
                subprocess.run([sys.executable, str(run.HERE.parent / "tests" / "services.py")], check=True)
                options = {"database": "redis", **stack.enter_context(run.backend_options("redis", run.server_help()))}
            if args.row.startswith("signed"):
                prepare = run.signed_load
            if args.row.startswith("socket"):
                options["use_web_sockets"] = True
                prepare = run.socket_prepare
                sockets = 1 if args.row == "socket-x1" else 50
                loader = harness.socket_loader(sockets, 50 // sockets)
            if args.http != "tornado":
                options["http"] = args.http
            # The plugins the row loads in bench/run.py: toto-core and the row's storage plugin.
            added = [name.strip() for name in args.plugins.split(",") if name.strip()]
            plugins = run.plugins_env(run.installed()[0], options, added)
            if added:
                label += "-with-" + "-".join(added)
            server = stack.enter_context(run.toto_server(label, options, loop, env={**plugins, **env}))
        load = prepare(server.url)

        def loads(seconds: float) -> None:
            if loader is not None:
                loader(server.url, seconds, settings)
            else:
                harness.run_wrk(server.url, load, seconds, settings.threads, settings.connections)

        loads(3)  # warm-up
        assert server.proc is not None
        out = Path(tempfile.mkstemp(prefix="toto-profile-", suffix=".txt")[1])
        # Blocking samples (py-spy pauses the process for each): --nonblocking cut a third of the
        # stacks short under load, which spoils the inclusive sums.
        record = ["record", "--format", "raw", "--rate", str(args.rate)]
        record += ["--duration", str(args.seconds), "--pid", str(server.proc.pid), "--output", str(out)]
        if args.row == "ceiling":
            record.append("--subprocesses")  # granian's CLI serves from a worker process it spawns
        command = " ".join(["py-spy", *record]).replace(str(server.proc.pid), "PID").replace(str(out), "OUT")
        # wrk runs a little longer than py-spy records, so every sample is under load.
        loading = threading.Thread(target=loads, args=(args.seconds + 2,))
        loading.start()
        time.sleep(0.5)
        subprocess.run([py_spy, *record], check=True, capture_output=True)
        loading.join()
    collapsed = out.read_text()
    text = report(label, summarize(collapsed), command)
    results = harness.HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"profile-{label}.txt").write_text(collapsed)
    (results / f"profile-{label}.md").write_text(text + "\n")
    out.unlink()
    print(text)
    print(f"\nresults: {results}/profile-{label}.md, profile-{label}.txt (collapsed stacks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
