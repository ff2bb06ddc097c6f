"""Fixtures of the toto-mongo tests: SecantusDB (PyPI ``secantusdb``) as the MongoDB,
started here on a free port with its data in a temporary directory; a database of its
own for each test; private servers for tests that kill and restart theirs; and MongoDB
described for the contract kit (``backend``)."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from toto.testing import Backend
from toto_mongo import MongoStorage

from tests.mongo.standin import StandIn

#: Seconds a storage or server waits for MongoDB in the tests that inject no fault: generous,
#: so a loaded machine never turns a slow answer into a spurious 1013.
STEADY = 10.0


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


@pytest.fixture
def backend(standin: StandIn, database: str) -> Backend:
    """The test's database as the contract kit reaches it, also through its TCP proxy (where
    the backend's default timeout applies)."""

    def at(address: tuple[str, int] | None) -> str:
        return (
            standin.url(database)
            if address is None
            else f"mongodb://{address[0]}:{address[1]}/{database}?directConnection=true"
        )

    def storage(namespace: str, address: tuple[str, int] | None) -> MongoStorage:
        if address is None:
            return MongoStorage(at(address), prefix=namespace, timeout=STEADY)
        return MongoStorage(at(address), prefix=namespace)

    def server_options(namespace: str, address: tuple[str, int] | None) -> dict[str, object]:
        options = {"database": "mongodb", "database_url": at(address), "mongo_collection_prefix": namespace}
        return options if address is not None else {**options, "mongo_timeout": STEADY}

    return Backend(storage=storage, server_options=server_options, database=("127.0.0.1", standin.port))
