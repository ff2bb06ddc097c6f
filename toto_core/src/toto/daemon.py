"""Running a server: in the foreground, as a ``--processes`` group, or detached.

``TotoServer.run()`` comes here. The options that steer it:

- ``--start`` detaches (double fork and ``setsid``), writes ``pidfile`` and sends all
  output to ``log_file``; the launching command returns once the server answers.
- ``--stop`` sends SIGTERM to the server of ``pidfile``, waits up to ``stop_timeout``,
  then SIGKILLs what is left, and removes the pidfiles. ``--restart`` is both.
- ``--processes=N`` (0: one per CPU) forks N servers on ports ``port``, ``port+1``, ...,
  or all on ``port`` with ``--reuse_port``; the parent restarts a child that dies and
  forwards SIGTERM to all of them.
- SIGTERM drains: the server stops listening, in-flight requests get ``drain_timeout``
  seconds to finish, then storage and the event bus close.

The pidfile holds the pid and stays locked (``flock``) while the server runs, so a
pidfile left by a crash is recognised as stale however the pids were reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # Windows: no fork, no flock; only a single foreground process
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from toto.server import TotoServer

log = logging.getLogger("toto.daemon")

#: A child that dies this soon after it was started counts as a failed start.
_QUICK_DEATH = 2.0
#: Failed starts in a row after which the group gives up (e.g. the port is taken).
_MAX_QUICK_DEATHS = 5


class DaemonError(Exception):
    """A problem the operator can act on; printed as one line."""


# -- pidfiles -------------------------------------------------------------------------------


def child_pidfile(pidfile: str, index: int) -> str:
    """``toto.pid`` -> ``toto.0.pid``: the pidfile of child ``index`` of a group."""
    stem, dot, ext = pidfile.rpartition(".")
    return f"{stem}.{index}.{ext}" if dot and "/" not in ext else f"{pidfile}.{index}"


def _child_pidfiles(pidfile: str) -> list[str]:
    directory = os.path.dirname(pidfile) or "."
    probe = os.path.basename(child_pidfile(pidfile, 0))
    prefix, suffix = probe.split(".0", 1) if ".0" in probe else (probe, "")
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(directory):
            middle = entry[len(prefix) + 1 : len(entry) - len(suffix)] if suffix else entry[len(prefix) + 1 :]
            if entry.startswith(prefix + ".") and entry.endswith(suffix) and middle.isdigit():
                found.append(os.path.join(directory, entry))
    return sorted(found)


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().split()
        return int(text[0]) if text else None
    except (FileNotFoundError, ValueError):
        return None


def pidfile_locked(path: str) -> bool:
    """Whether a live server holds ``path`` (its lock outlives every pid reuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        raise
    finally:
        os.close(fd)
    return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours (a child not yet reaped) is gone for every practical purpose.
    with contextlib.suppress(OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    return True


class Pidfile:
    """The lock-holding pidfile of a running server (``--start``)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Lock and write our pid; raise ``DaemonError`` when another server holds it."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DaemonError(already_running(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def already_running(pidfile: str) -> str:
    pid = read_pid(pidfile)
    shown = f"pid {pid}, " if pid else ""
    return f"the server already runs ({shown}pidfile {pidfile}); stop it with --stop or use --restart"


def _write_pid(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


# -- entry point ------------------------------------------------------------------------------


def run(server: TotoServer) -> None:
    """Do what the options ask: stop, restart, start detached, or serve here."""
    o = server.options
    try:
        if (o.start or o.stop or o.restart) and (fcntl is None or not hasattr(os, "fork")):
            raise DaemonError("--start, --stop and --restart need a POSIX system; run the server in the foreground")
        if o.stop and not o.restart:
            stop(o.pidfile, float(o.stop_timeout))
            return
        if o.restart:
            stop(o.pidfile, float(o.stop_timeout), missing_ok=True)
            start(server)
            return
        if o.start:
            start(server)
            return
        serve(server)
    except DaemonError as exc:
        print(f"toto: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def stop_command(argv: list[str]) -> None:
    """``toto serve --stop``: needs only the options, not the method package or storage."""
    from toto.cli import exit_with_error
    from toto.exceptions import PluginError
    from toto.options import OptionError, Options, define_all_options, read_options
    from toto.plugins import get_plugin_manager, merge_named

    options = Options()
    try:
        pm = get_plugin_manager()
        define_all_options(options, pm, merge_named(pm, "toto_register_authenticators"))
        read_options(options, argv)
    except (OptionError, PluginError) as exc:
        exit_with_error(str(exc))
    try:
        stop(options.pidfile, float(options.stop_timeout))
    except DaemonError as exc:
        exit_with_error(str(exc), 1)


def process_count(server: TotoServer) -> int:
    count = int(server.options.processes)
    if count < 0:
        raise DaemonError(f"--processes must be 0 (one per CPU) or more, got {count}")
    return count or (os.cpu_count() or 1)


def serve(server: TotoServer, pidfile: Pidfile | None = None) -> None:
    """Serve in the foreground: one process, or a supervised group."""
    count = process_count(server)
    o = server.options
    if o.reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise DaemonError("--reuse_port is not supported on this platform; use sequential ports (drop --reuse_port)")
    if count == 1 and not o.reuse_port:
        serve_here(server)
        return
    if not hasattr(os, "fork"):
        raise DaemonError("--processes needs a POSIX system (fork); run one process per port yourself")
    Group(server, count, pidfile).run()


def serve_here(server: TotoServer, sockets: list[Any] | None = None) -> None:
    """Serve in this process; a port that cannot be bound is one line, not a traceback."""
    o = server.options
    try:
        server.run_process(sockets)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise DaemonError(f"cannot listen on {o.address or '*'}:{o.port}: {exc.strerror}") from None


# -- stopping -----------------------------------------------------------------------------------


def stop(pidfile: str, timeout: float, missing_ok: bool = False) -> None:
    """SIGTERM the server of ``pidfile`` (and its group), wait, SIGKILL leftovers, clean up."""
    pidfile = os.path.abspath(pidfile)
    children = _child_pidfiles(pidfile)
    # Children inherit the parent's lock, so it is held while any process of the group
    # lives. Without it every pid in these files is stale and may belong to someone else.
    if not pidfile_locked(pidfile):
        stale = os.path.exists(pidfile)
        for path in [pidfile, *children]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if missing_ok:
            return
        detail = "removed a stale pidfile" if stale else "no pidfile"
        raise DaemonError(f"no server is running for pidfile {pidfile} ({detail})")
    # The parent forwards SIGTERM to its children; signal the children too in case it died.
    pids = [read_pid(path) for path in [pidfile, *children]]
    targets = [pid for pid in pids if pid and process_alive(pid)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(process_alive(pid) for pid in targets):
            break
        time.sleep(0.05)
    else:
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"toto: server did not stop within {timeout:g}s; killed it", file=sys.stderr)
        while any(process_alive(pid) for pid in targets) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    deadline = time.monotonic() + 5
    while pidfile_locked(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)  # a process not in any pidfile (a child being restarted) still holds it
    for path in [pidfile, *children]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    print(f"toto: stopped (pid {' '.join(map(str, targets))})")


# -- starting detached --------------------------------------------------------------------------


def log_file_for(options: Any) -> str:
    if options.log_file:
        return os.path.abspath(str(options.log_file))
    return os.path.abspath(str(options.pidfile)).removesuffix(".pid") + ".log"


def start(server: TotoServer) -> None:
    """Detach and serve; return in the launching process once the server answers."""
    o = server.options
    o.pidfile = os.path.abspath(o.pidfile)
    o.log_file = log_file_for(o)
    if pidfile_locked(o.pidfile):
        raise DaemonError(already_running(o.pidfile))
    if os.path.exists(o.pidfile):
        print(f"toto: replacing stale pidfile {o.pidfile} (pid {read_pid(o.pidfile)} is not running)")
        os.unlink(o.pidfile)
    process_count(server)  # fail here, in the terminal, not in the log
    try:
        os.makedirs(os.path.dirname(o.pidfile), exist_ok=True)
        os.makedirs(os.path.dirname(o.log_file), exist_ok=True)
        with open(o.log_file, "a"):
            pass
    except OSError as exc:
        raise DaemonError(f"cannot write {exc.filename}: {exc.strerror}") from None
    if not os.access(os.path.dirname(o.pidfile), os.W_OK):
        raise DaemonError(f"cannot write pidfile {o.pidfile}: its directory is not writable")
    ready_read, ready_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first == 0:
        os.close(ready_read)
        os.setsid()
        second = os.fork()
        if second:
            os.write(ready_write, f"{second}\n".encode())
            os._exit(0)
        os.close(ready_write)
        _daemon_main(server)  # never returns
    os.close(ready_write)
    os.waitpid(first, 0)
    with os.fdopen(ready_read) as pipe:
        text = pipe.read().strip()
    pid = int(text) if text.isdigit() else 0
    _wait_until_serving(server, pid)


def _daemon_main(server: TotoServer) -> None:
    o = server.options
    code = 0
    try:
        os.umask(0o022)
        fd = os.open(o.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        pidfile = Pidfile(o.pidfile)
        pidfile.acquire()
        try:
            serve(server, pidfile)
        finally:
            pidfile.release()
    except DaemonError as exc:
        print(f"toto: error: {exc}", file=sys.stderr)
        code = 1
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logging.getLogger("toto.daemon").exception("server failed")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _ports(server: TotoServer) -> list[int]:
    o = server.options
    count = process_count(server)
    return [int(o.port)] if o.reuse_port else [int(o.port) + i for i in range(count)]


def _wait_until_serving(server: TotoServer, pid: int, timeout: float = 60.0) -> None:
    o = server.options
    host = o.address if o.address not in ("", "0.0.0.0", "::") else "127.0.0.1"
    waiting = set(_ports(server))
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        if not pid or not process_alive(pid):
            raise DaemonError(f"the server exited while starting; see {o.log_file}:\n{_tail(o.log_file)}")
        for port in list(waiting):
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                waiting.discard(port)
        if waiting:
            time.sleep(0.05)
    if waiting:
        raise DaemonError(f"the server (pid {pid}) did not listen within {timeout:g}s; see {o.log_file}")
    ports = ", ".join(map(str, _ports(server)))
    print(f"toto: started (pid {pid}, port {ports}, pidfile {o.pidfile}, log {o.log_file})")


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


# -- a group of processes -----------------------------------------------------------------------


class Group:
    """The parent of ``--processes`` children: forks them, restarts the dead, stops them all."""

    def __init__(self, server: TotoServer, count: int, pidfile: Pidfile | None) -> None:
        self.server = server
        self.count = count
        self.pidfile = pidfile
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.stopping = False
        self.quick_deaths = 0
        self.event_dir: str | None = None
        self.exit_code = 0

    def run(self) -> None:
        from toto.server import setup_logging

        o = self.server.options
        setup_logging(o.logging)
        self._share_events()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        ports = _ports(self.server)
        shown = f"port {ports[0]} (shared)" if o.reuse_port else f"ports {ports[0]}-{ports[-1]}"
        log.info("starting %d server processes on %s", self.count, shown)
        try:
            for index in range(self.count):
                self._spawn(index)
            self._supervise()
        finally:
            self._cleanup()

    def _share_events(self) -> None:
        """Events must cross processes: the in-process ``local`` bus becomes ``machine``."""
        o = self.server.options
        if o.event_bus == "local":
            o.event_bus = "machine"
            self.server.bus_factory = self.server.buses["machine"]
            log.info("event_bus local -> machine, so events reach every process of the group")
        if o.event_bus == "machine" and not o.event_url:
            self.event_dir = tempfile.mkdtemp(prefix="toto-events-")
            o.event_url = self.event_dir

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
            _write_pid(child_pidfile(self.pidfile.path, index))
            self.pidfile.fd = None
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
        sockets = None
        if o.reuse_port:
            from tornado.netutil import bind_sockets

            try:
                sockets = bind_sockets(int(o.port), o.address or None, reuse_port=True)
            except OSError as exc:
                raise DaemonError(f"cannot listen on {o.address or '*'}:{o.port}: {exc.strerror}") from None
        else:
            o.port = int(o.port) + index
        serve_here(self.server, sockets)
        return 0

    def _supervise(self) -> None:
        drain = float(self.server.options.drain_timeout)
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
        if self.event_dir is not None:
            import shutil

            shutil.rmtree(self.event_dir, ignore_errors=True)
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


# -- draining -------------------------------------------------------------------------------------


async def drain(server: TotoServer, timeout: float) -> None:
    """Wait until the requests in flight have finished, at most ``timeout`` seconds."""
    if not server.in_flight:
        return
    log.info("draining: %d in flight, waiting up to %gs", len(server.in_flight), timeout)
    deadline = time.monotonic() + timeout
    while server.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if server.in_flight:
        log.warning("draining: cut %d still in flight after %gs", len(server.in_flight), timeout)
