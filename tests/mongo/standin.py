"""SecantusDB, a MongoDB wire-protocol server (PyPI ``secantusdb``), as the tests' MongoDB.

``StandIn`` runs it in a process of its own on a free port, with its data in a
directory of the test run, so a test can kill it mid-run and start it again on the
same port and directory. Run as a script, this file is that process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StandIn:
    """One SecantusDB server process: ``start()``, ``kill()`` (SIGKILL, no clean shutdown),
    ``start()`` again on the same port and directory.

    ``sync_on_commit`` makes every acknowledged write survive a kill (like a journaled
    mongod); without it SecantusDB may lose the last writes before a SIGKILL.
    ``ttl_sweep_seconds`` is how often its TTL monitor runs (mongod: 60 s).
    """

    def __init__(
        self, directory: Path, sync_on_commit: bool = False, ttl_sweep_seconds: float = 1.0, auth: bool = False
    ) -> None:
        self.auth = auth  # SCRAM required (no user exists, so every credential is refused)
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "secantus.log"
        self.port = free_port()
        self.sync_on_commit = sync_on_commit
        self.ttl_sweep_seconds = ttl_sweep_seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> StandIn:
        command = [sys.executable, __file__, str(self.port), str(self.data), str(self.ttl_sweep_seconds)]
        if self.sync_on_commit:
            command.append("--sync-on-commit")
        if self.auth:
            command.append("--auth")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SecantusDB exited with {self.proc.returncode}:\n{self.output()}")
            if self.answers():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"SecantusDB did not answer on port {self.port} within {timeout}s:\n{self.output()}")

    def answers(self) -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(
            self.url("admin"), serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no checkpoint."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


def serve(port: int, data: str, ttl_sweep_seconds: float, sync_on_commit: bool, auth: bool) -> None:
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        host="127.0.0.1",
        port=port,
        storage_path=data,
        ttl_sweep_seconds=ttl_sweep_seconds,
        sync_on_commit=sync_on_commit,
        require_auth=auth,
    )
    server.start()
    print(f"SecantusDB listening on 127.0.0.1:{port}, data in {data}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # A test run that dies without stopping its stand-in must not leave it running.
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            break
    server.stop()


if __name__ == "__main__":
    serve(
        int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), "--sync-on-commit" in sys.argv[4:], "--auth" in sys.argv[4:]
    )
