"""Run a real Toto server in a subprocess for HTTP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from toto.client import AsyncTotoClient, TotoClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m toto serve`` on a free port of 127.0.0.1, stopped on exit.

    ``options`` become ``--name=value`` arguments (``http``, the transport, defaults to
    the ``TOTO_TEST_HTTP`` environment variable when it is set, so one suite runs on each
    transport); ``cwd`` is where the method package is imported from; ``python`` is the interpreter that runs the server
    (another virtual environment's, say; default: this one). The server's output goes to a log file that
    ``output()`` reads, and that is printed when the server fails to start.
    """

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        args: list[str] | None = None,
        startup_timeout: float = 30.0,
        python: str | None = None,
    ) -> None:
        self.options = dict(options or {})
        self.port = port or free_port()
        self.options.setdefault("address", "127.0.0.1")
        if os.environ.get("TOTO_TEST_HTTP"):
            self.options.setdefault("http", os.environ["TOTO_TEST_HTTP"])
        # Tests stop servers with long polls still open; do not wait the production drain.
        self.options.setdefault("drain_timeout", 2)
        self.options["port"] = self.port
        self.cwd = cwd
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = list(args or [])
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="toto-server-", suffix=".log", delete=False)

    def command(self) -> list[str]:
        opts = [f"--{k}={'true' if v is True else 'false' if v is False else v}" for k, v in self.options.items()]
        return [self.python, "-m", "toto", "serve", *self.args, *opts]

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"server did not listen on port {self.port} within {self.startup_timeout}s:\n{self.output()}"
        )

    @property
    def pid(self) -> int:
        """The server's process id (started servers only)."""
        if self.proc is None:
            raise RuntimeError("the server has not started")
        return self.proc.pid

    def output(self) -> str:
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def client(self, **kw: Any) -> TotoClient:
        """A client of this server that sends each call once (``retries=0`` unless given), so
        that a test sees every answer the server gives, a retryable 1013 included."""
        return TotoClient(self.url, **{"retries": 0, **kw})

    def async_client(self, **kw: Any) -> AsyncTotoClient:
        """The asyncio twin of ``client``, sending each call once unless ``retries`` is given."""
        return AsyncTotoClient(self.url, **{"retries": 0, **kw})

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Stop the server and remove its log file."""
        self.stop()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
