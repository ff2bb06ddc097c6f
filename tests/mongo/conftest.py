"""Fixtures of the toto-mongo tests: SecantusDB (PyPI ``secantusdb``) as the MongoDB,
started here on a free port with its data in a temporary directory; a database of its
own for each test; private servers for tests that kill and restart theirs."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mongo.standin import StandIn


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The MongoDB of this test run (SecantusDB in its own process), stopped at the end."""
    if importlib.util.find_spec("secantus") is None:
        pytest.fail(
            "SecantusDB, the tests' MongoDB, is not installed: pip install -e './plugins/toto_mongo[test]' "
            "(or pip install secantusdb==0.7.0b3)"
        )
    server = StandIn(tmp_path_factory.mktemp("secantus")).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mongo_url(standin: StandIn, database: str) -> str:
    """A URL naming a database of this test alone."""
    return standin.url(database)


@pytest.fixture
def private_standin(tmp_path: Path) -> Iterator[StandIn]:
    """A SecantusDB of one test, which it may kill and start again on the same port and
    directory; writes are synced, so what was acknowledged survives a kill."""
    server = StandIn(tmp_path, sync_on_commit=True).start()
    try:
        yield server
    finally:
        server.kill()
