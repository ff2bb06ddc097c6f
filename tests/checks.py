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
