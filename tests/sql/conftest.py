"""Fixtures of the toto-sql tests: the machine's PostgreSQL and MariaDB (started when down, a failure
when they cannot be had), a table prefix per test under one prefix of this run (whose tables are
dropped when the run ends), SQLite files in the test's temporary folder, and each database
described for the contract kit (``backend``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from toto.testing import Backend
from toto_sql import SqlStorage

from tests.services import SERVICES, reachable, start

PG_HOST, PG_PORT = "127.0.0.1", int(os.environ.get("TOTO_TEST_PG_PORT", "5432"))
MY_HOST, MY_PORT = "127.0.0.1", int(os.environ.get("TOTO_TEST_MYSQL_PORT", "3306"))
PG_URL = f"postgresql://postgres@{PG_HOST}:{{port}}/test"
MY_URL = f"mysql://root@{MY_HOST}:{{port}}/test"

BACKENDS = ["sqlite", "postgres", "mysql"]
NETWORKED = ["postgres", "mysql"]
RUN_PREFIX = f"t{uuid.uuid4().hex[:6]}_"
_counter = itertools.count()


def _service(name: str) -> tuple[int, str]:
    for service, port, command in SERVICES:
        if service == name:
            return port, command
    raise KeyError(name)


async def _answers(url: str) -> str | None:
    """None when ``url`` answers a query, else the error."""
    engine = create_async_engine(url, connect_args=_connect_args(url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await engine.dispose()


def _connect_args(url: str) -> dict[str, Any]:
    return {"timeout": 5} if "asyncpg" in url else {"connect_timeout": 5}


def ensure_database(name: str, server_url: str, create: str) -> None:
    """Start the service when it is down and create database ``test`` when it is missing; fail, never skip."""
    port, command = _service(name)
    if not reachable(port):
        start(name, command)
        deadline = time.monotonic() + 60
        while not reachable(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not reachable(port):
            pytest.fail(f"{name} does not answer on 127.0.0.1:{port} even after: {command}")

    async def prepare() -> str | None:
        error = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a server that just started may still refuse connections
            error = await _answers(server_url)
            if error is None:
                break
            await asyncio.sleep(0.5)
        if error is not None:
            return error
        engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", connect_args=_connect_args(server_url))
        try:
            async with engine.connect() as conn:
                await conn.execute(text(create))
        except Exception as exc:  # the database exists already (PostgreSQL has no IF NOT EXISTS here)
            if "already exists" not in str(exc):
                return f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
        return None

    error = asyncio.run(prepare())
    if error is not None:
        pytest.fail(f"{name} on 127.0.0.1:{port} cannot be used: {error}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    ensure_database("PostgreSQL", f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/postgres", "CREATE DATABASE test")
    url = PG_URL.format(port=PG_PORT)
    yield url
    drop_tables(url, RUN_PREFIX)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    ensure_database("MariaDB", f"mysql+asyncmy://root@{MY_HOST}:{MY_PORT}/", "CREATE DATABASE IF NOT EXISTS test")
    url = MY_URL.format(port=MY_PORT)
    yield url
    drop_tables(url, RUN_PREFIX)


def drop_tables(url: str, prefix: str) -> list[str]:
    """Drop every table of ``url`` whose name starts with ``prefix``; return their names."""
    from toto_sql.urls import resolve

    family, resolved = resolve("postgres" if url.startswith("postgres") else "mysql", url)
    if family.name == "postgres":
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        query = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"

    async def drop() -> list[str]:
        engine = create_async_engine(resolved, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                names = [row[0] for row in await conn.execute(text(query)) if row[0].startswith(prefix)]
                for name in names:
                    await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            return names
        finally:
            await engine.dispose()

    return asyncio.run(drop())


def table_prefix() -> str:
    """A table prefix no other test uses, under this run's prefix (dropped at the end of the run)."""
    return f"{RUN_PREFIX}{next(_counter)}_"


@pytest.fixture
def prefix() -> str:
    return table_prefix()


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each SQL database in turn: sqlite, postgres, mysql."""
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``database_url(kind)``: a URL of that database, a fresh file for SQLite."""

    def url(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / 'toto.db'}"
        if kind == "postgres":
            return str(request.getfixturevalue("postgres_url"))
        return str(request.getfixturevalue("mysql_url"))

    return url


@pytest.fixture
def url(kind: str, database_url: Callable[[str], str]) -> str:
    return database_url(kind)


def on(kind: str, url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    """Server options for one database."""
    return {"database": kind, "database_url": url, "sql_table_prefix": prefix, **extra}


@pytest.fixture
def backend(kind: str, url: str) -> Backend:
    """The database of ``kind`` as the contract kit reaches it (PostgreSQL and MariaDB also
    through its TCP proxy)."""
    template = {"postgres": PG_URL, "mysql": MY_URL}.get(kind)

    def at(address: tuple[str, int] | None) -> str:
        return url if address is None or template is None else template.format(port=address[1])

    return Backend(
        storage=lambda namespace, address: SqlStorage(at(address), prefix=namespace),
        server_options=lambda namespace, address: on(kind, at(address), namespace),
        database={"postgres": (PG_HOST, PG_PORT), "mysql": (MY_HOST, MY_PORT)}.get(kind),
        namespace=table_prefix,
    )
