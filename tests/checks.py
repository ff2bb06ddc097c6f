"""Checks that every storage backend's tests make the same way: outages and shared servers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from toto.client import TotoClientError
from toto.exceptions import StorageUnavailable
from toto.testing.server import ServerProcess


def user() -> str:
    """A user id no other test uses."""
    return f"user-{secrets.token_hex(4)}"


# What the issues promise: a database that goes away is answered in this many seconds.
OUTAGE_BOUND = 5.0


def assert_unavailable_in_time(calls: Iterable[Callable[[], Any]]) -> None:
    """Each call over HTTP fails with 1013 and HTTP 503 inside the bound, not later, not otherwise."""
    for number, call in enumerate(calls, 1):
        started = time.monotonic()
        try:
            answer = call()
        except TotoClientError as error:
            elapsed = time.monotonic() - started
            assert elapsed < OUTAGE_BOUND, f"call {number} took {elapsed:.1f} s"
            assert (error.code, error.status) == (1013, 503), f"call {number}: {error}"
        else:
            pytest.fail(f"call {number} answered {answer!r} during the outage")


async def assert_storage_unavailable_in_time(calls: Iterable[Awaitable[Any]]) -> None:
    """Each storage call raises StorageUnavailable (1013/503) inside the bound."""
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await call
        assert time.monotonic() - started < OUTAGE_BOUND
        assert (caught.value.code, caught.value.status) == (1013, 503)


def check_servers_share_accounts_and_sessions(a: ServerProcess, b: ServerProcess) -> None:
    """Two servers on one database: a session made on one works on the other, state included,
    and a password change through either ends every other session of the user on both."""
    name = user()
    on_a = a.client()
    on_a.create(name, "old")
    on_b = b.client()
    on_b.session = dict(on_a.session or {})
    assert on_b.call("whoami") == {"user_id": name}, "the two servers share sessions"
    assert on_a.call("counter.increment") == 1
    assert on_b.call("counter.increment") == 2

    second = b.client()
    second.login(name, "old")
    second.call("account.update", {"password": "old", "new_password": "new"})
    for ended in (on_a, on_b):
        with pytest.raises(TotoClientError) as caught:
            ended.call("whoami")
        assert caught.value.code in (1004, 1007)
    assert second.call("whoami") == {"user_id": name}
    with pytest.raises(TotoClientError):
        a.client().login(name, "old")
    a.client().login(name, "new")


def get_json(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url + path`` on a new connection: the status and the decoded JSON body."""
    import http.client
    import json
    from urllib.parse import urlsplit

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
    pytest.fail(f"{path} did not answer {status} within {within:g} s; last answer {seen}")


def check_health_follows_an_outage(
    server: ServerProcess, cut: Callable[[], Any], restore: Callable[[], Any], down: list[str]
) -> None:
    """``/_health`` is 200, turns 503 naming ``down`` within the outage bound of ``cut()``, and 200
    again after ``restore()``."""
    assert get_json(server.url, "/_health")[0] == 200
    cut()
    body = health_turns(server.url, 503, OUTAGE_BOUND)
    assert body["status"] == "down" and sorted(body["down"]) == sorted(down), body
    for name in down:
        assert body["parts"][name]["status"] == "down" and body["parts"][name]["error"], body
    restore()
    body = health_turns(server.url, 200, 20)
    assert body["status"] == "ok" and all(part["status"] == "up" for part in body["parts"].values()), body
    assert "Traceback" not in server.output()
