"""Real servers over HTTP on SQLite, PostgreSQL and MariaDB: the deployment contract, plus the embedded
default, the README's own-table example, SQLite's faults (a full or read-only disk, a file locked by
another process) and startup errors."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from toto.client import AsyncTotoClient, TotoClientError
from toto.testing import DeploymentContract, ServerProcess
from toto.testing import unique_user as user
from toto_sql import SqlStorage

from tests.conftest import BASIC_APP, FAST, TESTS, env_with
from tests.sql.conftest import on

README = TESTS.parent / "plugins" / "toto_sql" / "README.md"


class TestSqlDeployment(DeploymentContract):
    """A complete server, two servers sharing sessions, racing creates, no lost update, prefixes,
    the core's checks, and PostgreSQL and MariaDB outages answered with 1013/503 in time."""


def test_the_embedded_default_is_sqlite_in_toto_db_and_survives_a_restart(tmp_path: Path) -> None:
    options = {**FAST, "logging": "info"}
    env = {"PYTHONPATH": BASIC_APP}
    first = ServerProcess(options, cwd=str(tmp_path), env=env)
    with first:
        client = first.client()
        name = user()
        client.create(name, "pw")
        assert client.call("counter.increment") == 1
        output = first.output()
    assert (tmp_path / "toto.db").exists()
    assert "embedded SQLite database" in output and str(tmp_path / "toto.db") in output, output
    assert "database: sqlite" in output

    with ServerProcess(options, cwd=str(tmp_path), env=env) as second:
        again = second.client()
        again.session = dict(client.session)
        assert again.call("counter.increment") == 2, "sessions and their state survive a restart"
        second.client().login(name, "pw")


def readme_method() -> str:
    blocks = re.findall(r"```python\n(# methods/visits\.py\n.*?)```", README.read_text(), re.S)
    assert blocks, "the toto-sql README lost its methods/visits.py example"
    return blocks[0]


def test_the_readme_example_queries_its_own_table(
    start_server, kind: str, url: str, prefix: str, tmp_path: Path
) -> None:
    methods = tmp_path / "app" / "methods"
    methods.mkdir(parents=True)
    (methods / "__init__.py").write_text("")
    (methods / "visits.py").write_text(readme_method().replace('"visits"', f'"{prefix}visits"'))
    server = start_server(cwd=str(tmp_path / "app"), **on(kind, url, prefix))
    alice, bob = server.client(), server.client()
    alice.create(user(), "pw")
    bob.create(user(), "pw")
    assert [alice.call("visits", {"page": "/home"}) for _ in range(3)] == [1, 2, 3]
    assert bob.call("visits", {"page": "/home"}) == 1
    assert alice.call("visits", {"page": "/about"}) == 1


class SmallDisk:
    """A tmpfs of its own, to fill or to remount read-only: SQLite's own full and read-only errors."""

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path = path
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.fail(f"these tests mount a small tmpfs and need root: {done.stderr.decode().strip()}")

    def fill(self) -> None:
        subprocess.run(["dd", "if=/dev/zero", f"of={self.path / 'filler'}", "bs=64k"], capture_output=True)

    def unfill(self) -> None:
        (self.path / "filler").unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if shutil.which("mount") is None:
        pytest.fail("mount is not installed")
    disk = SmallDisk(tmp_path / "disk")
    try:
        yield disk
    finally:
        disk.unmount()


def test_a_full_disk_answers_1013_with_a_clear_log_line(start_server, small_disk: SmallDisk, prefix: str) -> None:
    server = start_server(**on("sqlite", f"sqlite:///{small_disk.path / 'toto.db'}", prefix, logging="info"))
    client = server.client()
    client.create(user(), "pw")
    small_disk.fill()
    with pytest.raises(TotoClientError) as caught:
        for _ in range(20):  # until a write needs a page the file does not have yet
            server.client().create(user(), "pw", bio="x" * 200_000)
    assert (caught.value.code, caught.value.status) == (1013, 503)
    small_disk.unfill()
    server.client().create(user(), "pw", bio="x" * 200_000)
    assert client.call("counter.increment") == 1
    output = server.output()
    assert "the disk is full" in output and "answers again" in output, output
    assert "Traceback" not in output


def test_a_read_only_database_answers_1013_with_a_clear_log_line(small_disk: SmallDisk, prefix: str) -> None:
    options = {**FAST, **on("sqlite", f"sqlite:///{small_disk.path / 'toto.db'}", prefix, logging="info")}
    name = user()
    with ServerProcess(options, cwd=BASIC_APP) as before:
        before.client().create(name, "pw")
    small_disk.remount("ro")  # with no file open for writing, as after a restart
    with ServerProcess(options, cwd=BASIC_APP) as server:
        with pytest.raises(TotoClientError) as caught:
            server.client().create(user(), "pw")
        assert (caught.value.code, caught.value.status) == (1013, 503)
        small_disk.remount("rw")
        server.client().create(user(), "pw")
        server.client().login(name, "pw")
        output = server.output()
    assert "read-only" in output and "answers again" in output, output
    assert "Traceback" not in output


def test_a_missing_driver_stops_the_server_with_the_pip_command(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "asyncpg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'asyncpg'\")\n")
    server = ServerProcess(
        {**FAST, "database": "postgres", "database_url": "postgresql://postgres@127.0.0.1:5432/test"},
        cwd=BASIC_APP,
        env={"PYTHONPATH": str(shadow.parent)},
    )
    with pytest.raises(RuntimeError) as caught:
        server.start()
    message = str(caught.value)
    assert "pip install './plugins/toto_sql[postgres]'" in message and "Traceback" not in message, message
    assert "pip install --find-links DIR 'toto-sql[postgres]'" in message, message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"database": "postgres"}, "database 'postgres' needs a URL"),
        ({"database": "mysql", "database_url": "postgresql://u@127.0.0.1/db"}, "use --database=postgres"),
        ({"database": "sqlite", "database_url": "sqlite:////no/such/dir/toto.db"}, "does not exist"),
        ({"database": "sqlite", "sql_table_prefix": "bad-prefix;"}, "sql_table_prefix"),
    ],
)
def test_a_wrong_configuration_stops_the_server_with_a_message(options: dict[str, Any], message: str) -> None:
    server = ServerProcess({**FAST, **options}, cwd=BASIC_APP)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert message in str(caught.value) and "Traceback" not in str(caught.value), str(caught.value)


def test_a_plugins_default_database_wins_over_the_embedded_sqlite(plugin_path: str, tmp_path: Path) -> None:
    """toto-sql names sqlite as a trylast fallback, so another plugin's toto_default_storage wins."""
    env = {**env_with(plugin_path, "toto_example_clash"), "TOTO_PLUGINS": "example_clash,toto-sql"}
    with ServerProcess({**FAST, "logging": "info"}, cwd=BASIC_APP, env=env) as default:
        default.client().create(user(), "pw")
        assert "(database: example," in default.output()
    explicit = {**FAST, "database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'chosen.db'}"}
    with ServerProcess(explicit, cwd=BASIC_APP, env=env) as chosen:
        chosen.client().create(user(), "pw")
    assert (tmp_path / "chosen.db").exists()


def test_expired_sessions_are_purged_in_the_background(start_server, kind: str, url: str, prefix: str) -> None:
    server = start_server(**on(kind, url, prefix, session_ttl=1, session_renew=0, purge_interval=0.3))
    client = server.client()
    client.create(user(), "pw")
    session_id = client.session["session_id"]

    async def stored() -> int:
        storage = SqlStorage(url, prefix=prefix)
        await storage.open()
        try:
            sessions = storage.tables.sessions
            statement = select(func.count()).select_from(sessions).where(sessions.c.session_id == session_id)
            async with storage.db.connect() as conn:
                return int((await conn.execute(statement)).scalar_one())
        finally:
            await storage.close()

    assert asyncio.run(stored()) == 1
    deadline = time.monotonic() + 30
    while asyncio.run(stored()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert asyncio.run(stored()) == 0, "the server deletes expired sessions by itself"


def test_a_sqlite_file_locked_by_another_process_answers_1013_in_time(
    start_server, tmp_path: Path, prefix: str
) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    server = start_server(**on("sqlite", f"sqlite:///{path}", prefix, logging="info"))
    client = server.client()
    name = user()
    client.create(name, "pw")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer that does not let go

    async def create(i: int) -> tuple[float, int]:
        started = time.monotonic()
        try:
            await AsyncTotoClient(server.url, timeout=60, retries=0).create(f"{name}-{i}", "pw")
        except TotoClientError as error:
            return time.monotonic() - started, error.code
        return time.monotonic() - started, 0

    async def main() -> list[tuple[float, int]]:
        return await asyncio.gather(*(create(i) for i in range(8)))

    try:
        answers = asyncio.run(main())
        assert [code for _, code in answers] == [1013] * 8, answers
        assert max(seconds for seconds, _ in answers) < 5, "writers wait their turn no longer than sql_timeout"
        assert client.call("whoami") == {"user_id": name}, "readers are not held up by a writer (WAL)"
    finally:
        other.execute("ROLLBACK")
        other.close()
    server.client().create(f"{name}-after", "pw")
    assert "locked by another process" in server.output()
