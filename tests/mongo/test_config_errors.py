"""MongoDB credentials the server refuses stop ``toto serve`` with one line and exit status 2,
as every configuration mistake does. (MongoDB makes a database on first use, so there is no
"unknown database" to refuse; a MongoDB that is down lets the server start, answering 1013:
tests/mongo/test_http.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASIC_APP
from tests.mongo.standin import StandIn
from tests.operations import free_port, http_args, toto


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """A MongoDB that requires authentication and has no user: every credential is refused."""
    server = StandIn(Path(tmp_path_factory.mktemp("secantus-auth")), auth=True).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize("credentials", ["toto_nobody:wrong@", ""])
def test_refused_credentials_are_one_line_and_exit_2(guarded: StandIn, credentials: str) -> None:
    url = f"mongodb://{credentials}127.0.0.1:{guarded.port}/toto_test"
    result = toto(
        "serve",
        "--database=mongodb",
        f"--database_url={url}",
        f"--port={free_port()}",
        "--address=127.0.0.1",
        "--method_module=methods",
        "--logging=warning",
        "--mongo_timeout=5",
        *http_args(),
        cwd=BASIC_APP,
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("toto: error: mongodb storage: "), result.stderr
    assert "Traceback" not in result.stderr and "wrong" not in result.stderr, result.stderr
