"""Socket calls per second: what wrk is to the HTTP rows, for a Toto WebSocket.

``python bench/socket_load.py URL --connections N --inflight K --seconds S`` opens N sockets
to ``URL`` (``ws://host:port/websocket``) and keeps K echo calls in flight on each (a new call
as soon as one is answered), for S seconds; it checks every answer and prints one line,
``SOCKJSON {"calls", "seconds", "p50_us", "p99_us", "errors"}``. ``--processes P`` splits the
sockets over P processes (as wrk splits connections over threads) and sums them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from typing import Any

PARAMETERS = {"message": "hello, toto", "n": 42, "items": [1, 2, 3], "nested": {"ok": True}}


async def drive(url: str, connections: int, inflight: int, seconds: float) -> dict[str, Any]:
    from tornado.websocket import websocket_connect

    sockets = [await websocket_connect(url, max_message_size=1 << 24) for _ in range(connections)]
    latencies: list[float] = []
    counts = {"calls": 0, "errors": 0}
    first_error: dict[str, Any] = {}
    stop_at = time.perf_counter() + seconds

    async def one(conn: Any) -> None:
        sent: dict[int, float] = {}
        next_id = 0

        def send() -> None:
            nonlocal next_id
            next_id += 1
            sent[next_id] = time.perf_counter()
            conn.write_message(json.dumps({"id": next_id, "method": "echo", "parameters": PARAMETERS}))

        for _ in range(inflight):
            send()
        while sent:
            frame = await conn.read_message()
            if frame is None:
                counts["errors"] += len(sent)
                return
            answer = json.loads(frame)
            started = sent.pop(answer.get("id"), None)
            if started is None or answer.get("result") != PARAMETERS:
                counts["errors"] += 1
                first_error.setdefault("answer", answer)
                continue
            now = time.perf_counter()
            counts["calls"] += 1
            latencies.append(now - started)
            if now < stop_at:
                send()

    began = time.perf_counter()
    await asyncio.gather(*(one(conn) for conn in sockets))
    elapsed = time.perf_counter() - began
    for conn in sockets:
        conn.close()
    latencies.sort()
    return {
        "calls": counts["calls"],
        "seconds": elapsed,
        "errors": counts["errors"],
        "first_error": first_error.get("answer"),
        "latencies": [latencies[int(len(latencies) * q)] for q in (0.5, 0.99)] if latencies else [0.0, 0.0],
    }


def _run(args: tuple[str, int, int, float]) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(drive(*args))
    except ImportError:
        return asyncio.run(drive(*args))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=1)
    a = parser.parse_args()
    processes = max(1, min(a.processes, a.connections))
    shares = [a.connections // processes + (i < a.connections % processes) for i in range(processes)]
    jobs = [(a.url, n, a.inflight, a.seconds) for n in shares]
    if processes == 1:
        results = [_run(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_run, jobs)
    seconds = max(r["seconds"] for r in results)
    out = {
        "calls": sum(r["calls"] for r in results),
        "seconds": seconds,
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "p50_us": statistics.median(r["latencies"][0] for r in results) * 1e6,
        "p99_us": max(r["latencies"][1] for r in results) * 1e6,
    }
    print("SOCKJSON " + json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
