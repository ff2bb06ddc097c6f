"""The ceilings: how fast each candidate HTTP server answers the JSON echo with nothing else.

``python bench/ceilings.py [--quick] [--rounds N] [--duration S]`` (or
``nox -s bench -- --ceilings``). A bare ASGI application (bench/servers/asgi_echo.py)
on granian and on uvicorn[standard] (httptools + uvloop), a bare RSGI application on
granian, aiohttp's low-level ``web.Server`` and a bare Tornado ``RequestHandler`` (the
baseline), every one doing the same JSON work (bench/servers/echo_work.py) on the same
event loop, in interleaved rounds with the baseline between every two rows. What a
transport can give Toto is at most its ceiling here; the table says what each costs in
CPU per request and how its p99 holds at the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import asdict
from typing import Any

import harness
from harness import Row, echo_prepare, granian_server, paired, python_server, uvicorn_server


def rows(loop: str) -> tuple[Row, list[Row]]:
    baseline = Row(
        "bare Tornado (baseline)",
        "baseline",
        "HTTPServer + RequestHandler",
        python_server("bare Tornado", "tornado_echo.py", loop),
        echo_prepare,
    )
    return baseline, [
        Row(
            "bare aiohttp",
            "ceiling",
            "web.Server, one handler, no router",
            python_server("bare aiohttp", "aiohttp_echo.py", loop, "bare"),
            echo_prepare,
        ),
        Row(
            "uvicorn[standard] ASGI",
            "ceiling",
            f"httptools, {loop}",
            uvicorn_server("uvicorn", "asgi_echo:app", loop),
            echo_prepare,
        ),
        Row(
            "granian ASGI",
            "ceiling",
            f"1 worker, {loop}",
            granian_server("granian asgi", "asgi_echo:app", "asgi", loop),
            echo_prepare,
        ),
        Row(
            "granian RSGI",
            "ceiling",
            f"1 worker, {loop}",
            granian_server("granian rsgi", "rsgi_echo:app", "rsgi", loop),
            echo_prepare,
        ),
    ]


def table(report: dict[str, Any]) -> str:
    lines = [*harness.header(report), "", *harness.rows_table(report["rows"]), ""]
    lines += ["| row / bare aiohttp (paired rounds) | req/s | CPU per request | p99 |", "| --- | ---: | ---: | ---: |"]
    by_name = {r["name"]: r for r in report["rows"]}
    aiohttp = by_name.get("bare aiohttp")
    for name, value in report["versus_aiohttp"].items():
        r = by_name[name]
        cpu = r["cpu_us"] / aiohttp["cpu_us"] if aiohttp and aiohttp["cpu_us"] else 0.0
        p99 = r["p99_ms"] / aiohttp["p99_ms"] if aiohttp and aiohttp["p99_ms"] else 0.0
        lines.append(f"| {name} | {value:.2f} | {cpu:.2f} | {p99:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_load_options(parser, rounds=7, quick="about a minute")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop", help="event loop of every server")
    args = parser.parse_args(argv)
    harness.ensure_wrk()
    harness.exit_on_sigterm()
    settings = harness.Settings(**harness.load_settings(args, args.loop))
    started = time.monotonic()
    print(f"HTTP server ceilings: {settings}", flush=True)
    baseline, others = rows(settings.loop)
    with contextlib.ExitStack() as stack:
        harness.start([baseline, *others], stack)
        harness.measure(baseline, others, settings)
    aiohttp = next(r for r in others if r.name == "bare aiohttp")
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": harness.machine(),
        "settings": asdict(settings),
        "rows": [r.summary() for r in [baseline, *others]],
        "versus_aiohttp": {
            r.name: round(v, 3) for r in others if r is not aiohttp and (v := paired(r, aiohttp)) is not None
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    return harness.publish(report, table(report), "ceilings", "ceilings", "Bare HTTP servers, the same JSON echo")


if __name__ == "__main__":
    raise SystemExit(main())
