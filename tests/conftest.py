"""Shared test helpers: where the test applications live, and servers started per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from toto.testing.server import ServerProcess

TESTS = Path(__file__).parent
BASIC_APP = str(TESTS / "apps" / "basic")
# Cheap password hashing and quiet logs: what every test server gets unless it says otherwise.
FAST = {"password_cost": 10, "logging": "warning"}


@pytest.fixture(scope="session")
def basic_app() -> str:
    """Directory of the shared test application (method_module=methods)."""
    return BASIC_APP


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(cwd=BASIC_APP, env=None, args=None, **options)`` starts a server of the
    app in ``cwd`` with ``FAST`` and the options; every server it started is stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        cwd: str = BASIC_APP, env: dict[str, str] | None = None, args: list[str] | None = None, **options: Any
    ) -> ServerProcess:
        server = ServerProcess({**FAST, **options}, cwd=cwd, env=env, args=args)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
