"""A database_url naming a database or role that does not exist, or credentials the server
refuses, stops ``toto serve`` with one line and exit status 2 (a configuration mistake,
like any other); a database server that is merely down still lets the server start."""

from __future__ import annotations

import pytest
from toto.client import TotoClientError
from toto.testing import health_turns

from tests.conftest import BASIC_APP
from tests.operations import free_port, http_args, toto


def serve(database: str, url: str) -> tuple[int, str]:
    result = toto(
        "serve",
        f"--database={database}",
        f"--database_url={url}",
        f"--port={free_port()}",
        "--address=127.0.0.1",
        "--method_module=methods",
        "--logging=warning",
        *http_args(),
        cwd=BASIC_APP,
        timeout=60,
    )
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("database", "path", "words"),
    [
        ("postgres", "postgres@{host}/toto_no_such_db", 'database "toto_no_such_db" does not exist'),
        ("postgres", "toto_no_such_role@{host}/test", 'role "toto_no_such_role" does not exist'),
        ("mysql", "root@{host}/toto_no_such_db", "Unknown database 'toto_no_such_db'"),
        ("mysql", "toto_nobody:wrong@{host}/test", "Access denied for user 'toto_nobody'"),
    ],
)
def test_a_url_the_database_refuses_is_one_line_and_exit_2(
    request: pytest.FixtureRequest, database: str, path: str, words: str
) -> None:
    working = request.getfixturevalue(f"{database}_url")  # the service runs (else this fails, never skips)
    scheme, rest = working.split("://", 1)
    host = rest.split("@", 1)[1].split("/", 1)[0]
    code, stderr = serve(database, f"{scheme}://{path.format(host=host)}")
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("toto: error: sql storage: "), stderr
    assert words in lines[0] and "check database_url" in lines[0], stderr
    assert "Traceback" not in stderr and "wrong" not in stderr  # no traceback, no password


@pytest.mark.parametrize("database", ["postgres", "mysql"])
def test_a_database_server_that_is_down_still_lets_the_server_start(start_server, database: str) -> None:
    port = free_port()  # nothing listens there: down, not misconfigured
    scheme = "postgresql" if database == "postgres" else "mysql"
    server = start_server(
        database=database, database_url=f"{scheme}://root@127.0.0.1:{port}/test", event_bus="local", sql_timeout=2
    )
    health_turns(server.url, 503, 10)
    with pytest.raises(TotoClientError) as caught:
        server.client().create("somebody", "pw")
    assert (caught.value.code, caught.value.status) == (1013, 503)
