"""The health check: ``<root>/_health`` (readiness) and ``<root>/_health/live`` (liveness).

Every Toto error is answered with HTTP 200, so a load balancer learns nothing from the
API itself; these two routes answer with the status a balancer or an orchestrator reads.

- Readiness (``_health``): 200 when the storage answers ``ping`` and the event bus is
  connected, each within ``health_timeout`` seconds; 503 naming the parts that are down,
  and 503 from SIGTERM on while the server drains, so a balancer stops sending to it
  before it stops listening (see the ``drain_delay`` option).
- Liveness (``_health/live``): 200 while the process serves at all, draining or not; a
  process that stops answering it should be restarted.

The path is the ``health_path`` option (empty: no health routes). A route is matched on
the URL path only, so the check is never reachable as a method name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from toto.events import EventManager
from toto.http import Request, Response, Route

if TYPE_CHECKING:
    from toto.server import TotoServer

_NO_CACHE = {"Cache-Control": "no-store"}


def health_routes(server: TotoServer) -> list[Route]:
    """The readiness and liveness routes of ``server``, or none when ``health_path`` is empty."""
    path = str(server.options.health_path or "").strip("/")
    if not path:
        return []
    timeout = float(server.options.health_timeout)

    async def ready(request: Request) -> Response:
        bus = EventManager.instance().bus
        storage, event_bus = await asyncio.gather(
            _probe(server.storage.ping if server.storage is not None else None, timeout),
            _probe(bus.ping if bus is not None else None, timeout),
        )
        storage["name"] = server.options.database
        event_bus["name"] = server.options.event_bus
        parts = {"storage": storage, "event_bus": event_bus}
        down = [name for name, part in parts.items() if part["status"] != "up"]
        if server.draining:
            body: dict[str, Any] = {"status": "draining", "down": ["server", *down], "parts": parts}
        elif down:
            body = {"status": "down", "down": down, "parts": parts}
        else:
            body = {"status": "ok", "parts": parts}
        return _answer(body, 200 if body["status"] == "ok" else 503)

    def live(request: Request) -> Response:
        return _answer({"status": "ok", "draining": server.draining}, 200)

    return [Route(path, ready, name="readiness"), Route(path + "/live", live, name="liveness")]


async def _probe(ping: Callable[[], Awaitable[bool]] | None, timeout: float) -> dict[str, Any]:
    """``{"status": "up"|"down", "seconds": ..., "error": ...}`` of one ``ping``."""
    if ping is None:
        return {"status": "down", "error": "not started"}
    started = time.perf_counter()
    try:
        ok = await asyncio.wait_for(ping(), timeout)
    except asyncio.TimeoutError:
        return {"status": "down", "error": f"no answer within {timeout:g}s"}
    except Exception as exc:  # a ping that raises instead of answering False is down all the same
        return {"status": "down", "error": type(exc).__name__}
    seconds = round(time.perf_counter() - started, 6)
    if not ok:
        return {"status": "down", "seconds": seconds, "error": "not connected"}
    return {"status": "up", "seconds": seconds}


def _answer(body: dict[str, Any], status: int) -> Response:
    response = Response.json(body, status)
    response.headers.update(_NO_CACHE)
    return response
