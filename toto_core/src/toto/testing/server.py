"""Run a real Toto server in a subprocess for HTTP tests."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from toto.client import AsyncTotoClient, TotoClient

_LOW, _HIGH = 22000, 32000  # below the kernel's ephemeral range (32768 and up on Linux)
_cursor: list[int] = []


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on ``port`` (Linux's /proc/net), None elsewhere."""
    found: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found if readable else None


def _family(pid: int) -> set[int]:
    """``pid`` and every process below it (a --processes group's servers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    family, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return family


def listens_on(pid: int, port: int) -> bool | None:
    """Whether the process ``pid`` (or one below it) holds a socket listening on ``port``;
    None where /proc cannot tell (then a connection that succeeds has to do)."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    if not inodes:
        return False
    for member in _family(pid):
        try:
            fds = os.listdir(f"/proc/{member}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{member}/fd/{fd}")
            except OSError:  # closed since the listing
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def free_port() -> int:
    """A port free now, for a server about to bind it.

    Ports are taken below the kernel's ephemeral range, so no outgoing connection (of
    this test or any other) takes one, or its neighbours, before the server binds it;
    under pytest-xdist each worker draws from a slice of its own, and one process walks its
    slice in steps of four, so a server group's ``port + 1`` is free as well and two calls
    in a row never answer the same port.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (_HIGH - _LOW) // count
    low = _LOW + (index % count) * size
    if not _cursor:
        _cursor.append(random.randrange(size))  # noqa: S311 (not a secret: two test runs at once rarely walk in step)
    for _ in range(size // 4):
        _cursor[0] = (_cursor[0] + 4) % (size - 4)
        port = low + _cursor[0]
        if _bindable(port):
            return port
    with socket.socket() as s:  # the slice is full: fall back to one the kernel picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _PortTaken(Exception):
    """The server could not listen: another program holds its port."""


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
        self._chosen = port is None  # a port of our choosing may be chosen again if another takes it
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
        """Start the server and return once it listens: its own process (or one of its group),
        not whatever else answers on the port. A port of ``free_port``'s choosing that another
        program took in between is replaced by a new one, twice at most."""
        for attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                if not self._chosen or attempt == 2:
                    raise RuntimeError(f"port {self.port} is taken:\n{self.output()}") from None
                self.port = free_port()
                self.options["port"] = self.port
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start_once(self) -> ServerProcess:
        self._log.seek(0)
        self._log.truncate()
        self.proc = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()
                if "Address already in use" in output:
                    raise _PortTaken()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if listens_on(self.proc.pid, self.port) is not False:
                return self
            time.sleep(0.05)  # someone else answers on this port: ours will listen or exit
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
