"""A PostgreSQL that is shutting down refuses new connections with SQLSTATE 57P03 ("the database
system is shutting down"; "... is starting up" while it comes back). The storage answers that
as the outage it is, 1013, never 1000 with a traceback (the cluster suite's PostgreSQL restart
found it). A private server of this test (initdb, as the postgres user) is shut down "smart":
it waits for the connection the test holds, refusing every new one meanwhile."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, StorageUnavailable
from toto.testing import run_storages
from toto_sql import SqlStorage

from tests.redis.servers import free_ports

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def private_postgres() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0:
        pytest.fail(f"this test starts its own PostgreSQL: it needs {PG_BIN} and root (to run it as postgres)")
    owner = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="toto-pg-"))
    os.chown(root, owner.pw_uid, owner.pw_gid)
    as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    data = root / "data"
    subprocess.run(
        [*as_postgres, str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_ports(1)[0]
    log = open(root / "log", "wb")
    proc = subprocess.Popen(
        [*as_postgres, str(PG_BIN / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
         "-c", f"port={port}", "-c", f"unix_socket_directories={root}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    try:
        deadline = time.monotonic() + 60
        while not _accepts(port):
            assert proc.poll() is None and time.monotonic() < deadline, (root / "log").read_text()
            time.sleep(0.1)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _accepts(port: int) -> bool:
    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", timeout=2)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def test_a_postgres_shutting_down_answers_1013(private_postgres: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = private_postgres
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    run_storages(lambda s: s.create_account("ada", "h", {}), SqlStorage(url, prefix="shutdown_"))

    async def main() -> None:
        holder = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres")
        try:
            proc.send_signal(signal.SIGTERM)  # smart shutdown: new connections refused, ours kept
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    connection = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres")
                except asyncpg.CannotConnectNowError:
                    break
                await connection.close()
                assert asyncio.get_running_loop().time() < deadline, "PostgreSQL did not begin its shutdown"
                await asyncio.sleep(0.05)
            storage = SqlStorage(url, prefix="shutdown_", timeout=5)
            with pytest.raises(StorageUnavailable) as caught:
                await storage.open()
                try:
                    await storage.get_account("ada")
                finally:
                    await storage.close()
            assert caught.value.code == ERROR_SERVICE_UNAVAILABLE
        finally:
            await holder.close()

    asyncio.run(main())
