"""Checks of the health route (``<root>/_health``, ``toto.health``) as a balancer sees it."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from toto.testing.outage import OUTAGE_BOUND
from toto.testing.server import ServerProcess


def get_json(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url + path`` on a new connection: the status and the decoded JSON body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def health_turns(url: str, status: int, within: float, path: str = "/_health") -> Any:
    """Poll the health check until it answers ``status``; fail if it does not within ``within`` s."""
    deadline = time.monotonic() + within
    seen: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        seen = get_json(url, path)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {within:g} s; last answer {seen}")


def check_health_is_down(body: Any, down: list[str]) -> None:
    """A 503 answer of the health check names exactly the parts in ``down``, each with its error."""
    assert body["status"] == "down" and sorted(body["down"]) == sorted(down), body
    for name in down:
        assert body["parts"][name]["status"] == "down" and body["parts"][name]["error"], body


def check_health_is_up(body: Any) -> None:
    assert body["status"] == "ok" and all(part["status"] == "up" for part in body["parts"].values()), body


def check_health_follows_an_outage(
    server: ServerProcess, cut: Callable[[], Any], restore: Callable[[], Any], down: list[str]
) -> None:
    """``/_health`` is 200, turns 503 naming ``down`` within the outage bound of ``cut()``, and 200
    again after ``restore()``."""
    assert get_json(server.url, "/_health")[0] == 200
    cut()
    check_health_is_down(health_turns(server.url, 503, OUTAGE_BOUND), down)
    restore()
    check_health_is_up(health_turns(server.url, 200, 20))
    assert "Traceback" not in server.output()
