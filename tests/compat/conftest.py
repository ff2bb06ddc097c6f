"""Fixtures of the seed-API tests: servers of an app written in the original's style
(tests/compat/apps/seed), on memory, sqlite and redis storage."""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from toto.testing import ServerProcess

from tests.redis.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, ensure_machine_redis

SEED_APP = str(Path(__file__).parent / "apps" / "seed")
STORAGES = ["memory", "sqlite", "redis"]


@contextlib.contextmanager
def redis_storage(host: str = REDIS_HOST, port: int = REDIS_PORT) -> Iterator[dict[str, Any]]:
    """Server options on the machine's Redis (through ``host:port``, a proxy say) under a key
    prefix of its own, whose keys are deleted afterwards."""
    ensure_machine_redis()
    prefix = f"seed{uuid.uuid4().hex[:8]}:"
    yield {"database": "redis", "database_url": f"redis://{host}:{port}/{REDIS_DB}", "redis_prefix": prefix}
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    keys = list(raw.scan_iter(match=prefix + "*"))
    if keys:
        raw.delete(*keys)


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Server options for each storage in turn."""
    kind = request.param
    if kind == "memory":
        yield {"database": "memory"}
    elif kind == "sqlite":
        yield {"database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'seed.db'}"}
    else:
        with redis_storage() as options:
            yield options


@pytest.fixture
def seed_server(start_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """``seed_server(**options)``: a server of the seed-style app (memory storage unless told)."""

    def start(**options: Any) -> ServerProcess:
        return start_server(cwd=SEED_APP, **{"database": "memory", **options})

    return start


class Exchange:
    """One raw HTTP exchange: status, headers (lower-cased names; Set-Cookie as a list) and body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.body = body
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.cookies: list[str] = headers.get_all("Set-Cookie") or []

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> Exchange:
    """Send exactly ``body`` and ``headers`` (what a client of the original sends) and read the answer."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        return Exchange(answer.status, answer.headers, answer.read())
    finally:
        connection.close()
