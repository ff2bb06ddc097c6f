"""The parent of a ``--processes`` group: forks the servers, restarts one that dies, stops them all;
and what serving in processes needs whether detached or not (``serve_here``, ``process_count``,
``listen_ports``, ``DaemonError``), shared with ``toto.daemon`` above it.

With ``--reuse_port`` every child listens on ``port`` (SO_REUSEPORT); otherwise child N
listens on ``port + N``. SIGTERM to the parent is forwarded to every child, which then
drains (see ``TotoServer.stop``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from toto.console import setup_logging
from toto.pidfile import Pidfile, child_pidfile, write_pid

if TYPE_CHECKING:
    from toto.server import TotoServer

log = logging.getLogger("toto.daemon")

#: A child that dies this soon after it was started counts as a failed start.
_QUICK_DEATH = 2.0
#: Failed starts in a row after which the group gives up (e.g. the port is taken).
_MAX_QUICK_DEATHS = 5


class DaemonError(Exception):
    """A problem the operator can act on; printed as one line."""


def process_count(server: TotoServer) -> int:
    count = int(server.options.processes)
    if count < -1:
        raise DaemonError(f"--processes must be 0 or -1 (one per CPU) or more, got {count}")
    return count if count > 0 else (os.cpu_count() or 1)


def serve_here(server: TotoServer, sockets: list[Any] | None = None) -> None:
    """Serve in this process; a port that cannot be bound is one line, not a traceback."""
    o = server.options
    try:
        server.run_process(sockets)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise DaemonError(f"cannot listen on {o.address or '*'}:{o.port}: {exc.strerror}") from None


def listen_ports(server: TotoServer) -> list[int]:
    o = server.options
    count = process_count(server)
    return [int(o.port)] if o.reuse_port else [int(o.port) + i for i in range(count)]


class Group:
    """The parent of ``--processes`` children: forks them, restarts the dead, stops them all."""

    def __init__(self, server: TotoServer, count: int, pidfile: Pidfile | None) -> None:
        self.server = server
        self.count = count
        self.pidfile = pidfile
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.stopping = False
        self.quick_deaths = 0
        self.group_dir: str | None = None
        self.exit_code = 0

    def run(self) -> None:
        o = self.server.options
        setup_logging(o.logging, o.log_format)
        # A private directory for the group's shared files (machine bus sockets, plugins' files
        # such as multiprocess metrics), and events that reach every process: the server's to set.
        self.group_dir = self.server.join_process_group()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        ports = listen_ports(self.server)
        shown = f"port {ports[0]} (shared)" if o.reuse_port else f"ports {ports[0]}-{ports[-1]}"
        log.info("starting %d server processes on %s", self.count, shown)
        try:
            # Each child (a restarted one too) tells --start it listens through the readiness pipe
            # it inherits. The parent keeps its end open: a child that failed to bind (its port
            # taken for a moment) is restarted, and --start fails only when the group gives up.
            for index in range(self.count):
                self._spawn(index)
            self._supervise()
        finally:
            self._cleanup()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            log.info("stopping %d server processes", len(self.children))
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                code = self._child(index)
            except DaemonError as exc:
                print(f"toto: error: {exc}", file=sys.stderr)
                code = 1
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("server process %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        self.children[pid] = (index, time.monotonic())

    def _child(self, index: int) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        o = self.server.options
        parent = os.getppid()
        if self.pidfile is not None:
            # The lock belongs to the parent; a child only names itself.
            write_pid(child_pidfile(self.pidfile.path, index))
            self.pidfile.fd = None
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
        sockets = None
        if not o.reuse_port:
            o.port = int(o.port) + index
        elif o.http != "granian":
            # granian binds its own socket (with SO_REUSEPORT): one bound here and closed once
            # it listens would reset the connections the kernel had queued on it meanwhile.
            # Imported here: the commands that only stop a server (toto serve --stop) load no Tornado.
            from tornado.netutil import bind_sockets

            try:
                sockets = bind_sockets(int(o.port), o.address or None, reuse_port=True)
            except OSError as exc:
                raise DaemonError(f"cannot listen on {o.address or '*'}:{o.port}: {exc.strerror}") from None
        serve_here(self.server, sockets)
        return 0

    def _supervise(self) -> None:
        drain = float(self.server.options.drain_delay) + float(self.server.options.drain_timeout)
        kill_at: float | None = None
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if self.stopping:
                    if kill_at is None:
                        kill_at = time.monotonic() + drain + 5
                    elif time.monotonic() > kill_at:
                        for child in self.children:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(child, signal.SIGKILL)
                time.sleep(0.1)
                continue
            index, started = self.children.pop(pid)
            if self.stopping:
                continue
            self._restart(index, started, status)

    def _restart(self, index: int, started: float, status: int) -> None:
        how = (
            f"signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit code {os.waitstatus_to_exitcode(status)}"
        )
        if time.monotonic() - started < _QUICK_DEATH:
            self.quick_deaths += 1
            if self.quick_deaths >= _MAX_QUICK_DEATHS:
                log.error("server process %d keeps dying at startup (%s); stopping the group", index, how)
                self._on_signal(signal.SIGTERM, None)
                self.exit_code = 1
                return
            time.sleep(0.2 * self.quick_deaths)
        else:
            self.quick_deaths = 0
        log.warning("server process %d died (%s); starting it again", index, how)
        self._spawn(index)

    def _cleanup(self) -> None:
        if self.pidfile is not None:
            for index in range(self.count):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(child_pidfile(self.pidfile.path, index))
        if self.group_dir is not None:
            shutil.rmtree(self.group_dir, ignore_errors=True)
        log.info("all server processes stopped")
        if self.exit_code:
            raise SystemExit(self.exit_code)


def _exit_with_parent(parent: int) -> None:
    """Stop this child gracefully when the group's parent is gone (killed with SIGKILL)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
