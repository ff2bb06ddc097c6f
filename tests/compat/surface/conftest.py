"""Servers of an application written in the original Toto's style (``app/``), on memory,
SQLite and Redis storage.

``seed_server(database, **options)`` starts one with the original's ``event_init_module``
and ``startup_function`` set, as its chat template's config did; ``database`` is the
parametrized ``database`` fixture where storage matters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from toto.testing.server import ServerProcess

from tests.redis.conftest import prefix, redis_url, run_prefix  # noqa: F401  (fixtures used here)

APP = str(Path(__file__).parent / "app")
#: Where storage matters, every test runs on each of these.
DATABASES = ("memory", "sqlite", "redis")


@pytest.fixture
def storage_options(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], dict[str, Any]]:
    """``storage_options(name)``: the options that put a server on that storage, each test's own."""

    def options(name: str) -> dict[str, Any]:
        if name == "sqlite":
            return {"database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'seed.db'}"}
        if name == "redis":
            url = request.getfixturevalue("redis_url")
            return {"database": "redis", "database_url": url, "redis_prefix": request.getfixturevalue("prefix")}
        return {"database": name}

    return options


@pytest.fixture
def seed_server(start_server, storage_options) -> Callable[..., ServerProcess]:
    def start(database: str = "memory", **options: Any) -> ServerProcess:
        defaults = {"event_init_module": "setup_events", "startup_function": "startup.setup"}
        server: ServerProcess = start_server(cwd=APP, **{**defaults, **storage_options(database), **options})
        return server

    return start
