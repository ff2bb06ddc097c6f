"""Running a server: in the foreground, as a ``--processes`` group (``toto.supervisor``), or
detached with a pidfile (``toto.pidfile``).

``TotoServer.run()`` comes here. The options that steer it:

- ``--start`` detaches (double fork and ``setsid``), writes ``pidfile`` and sends all
  output to ``log_file``; the launching command returns once every server process has
  written its port to the readiness pipe (``TotoServer.report_ready``), and fails with
  the log's error line when they all end first.
- ``--stop`` sends SIGTERM to the server of ``pidfile``, waits up to ``stop_timeout``,
  then SIGKILLs what is left, and removes the pidfiles. ``--restart`` is both.
- ``--processes=N`` (0: one per CPU) forks N servers on ports ``port``, ``port+1``, ...,
  or all on ``port`` with ``--reuse_port``; the parent restarts a child that dies and
  forwards SIGTERM to all of them.
- SIGTERM drains: the readiness check fails at once, the server keeps accepting for
  ``drain_delay`` seconds (so a load balancer stops sending first), stops listening,
  in-flight requests get ``drain_timeout`` seconds to finish, then storage and the
  event bus close.

The pidfile holds the pid and stays locked (``flock``) while the server runs, so a
pidfile left by a crash is recognised as stale however the pids were reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from toto.console import exit_with_error
from toto.exceptions import PluginError
from toto.options import OptionError, Options, define_all_options, read_options
from toto.pidfile import (
    LOCKING,
    Pidfile,
    PidfileError,
    already_running,
    child_pidfiles,
    pidfile_locked,
    process_alive,
    read_pid,
)
from toto.plugins import get_plugin_manager, merge_named

# DaemonError, process_count, serve_here and listen_ports keep their names here too.
from toto.supervisor import DaemonError as DaemonError
from toto.supervisor import Group, listen_ports, serve_here
from toto.supervisor import process_count as process_count

if TYPE_CHECKING:
    from toto.server import TotoServer

log = logging.getLogger("toto.daemon")


# -- entry point ------------------------------------------------------------------------------


def run(server: TotoServer) -> None:
    """Do what the options ask: stop, restart, start detached, or serve here."""
    o = server.options
    try:
        if (o.start or o.stop or o.restart) and (not LOCKING or not hasattr(os, "fork")):
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
    except (DaemonError, PidfileError) as exc:
        exit_with_error(str(exc), 1)


def stop_command(argv: list[str]) -> None:
    """``toto serve --stop``: needs only the options, not the method package or storage."""
    options = Options()
    try:
        pm = get_plugin_manager()
        transports = merge_named(pm, "toto_register_transports")
        define_all_options(options, pm, merge_named(pm, "toto_register_authenticators"), transports)
        read_options(options, argv)
    except (OptionError, PluginError) as exc:
        exit_with_error(str(exc))
    try:
        stop(options.pidfile, float(options.stop_timeout))
    except DaemonError as exc:
        exit_with_error(str(exc), 1)


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


# -- stopping -----------------------------------------------------------------------------------


def stop(pidfile: str, timeout: float, missing_ok: bool = False) -> None:
    """SIGTERM the server of ``pidfile`` (and its group), wait, SIGKILL leftovers, clean up."""
    pidfile = os.path.abspath(pidfile)
    children = child_pidfiles(pidfile)
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
    log_start = os.path.getsize(o.log_file)
    # The readiness pipe: the first child writes the daemon's pid, and every server process
    # writes its port once it listens (``TotoServer.ready_fd``). Polling the port instead
    # would take another program listening there for the server.
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
        server.ready_fd = ready_write
        _daemon_main(server)  # never returns
    os.close(ready_write)
    os.waitpid(first, 0)
    _wait_until_serving(server, ready_read, log_start)


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
    except (DaemonError, PidfileError) as exc:
        print(f"toto: error: {exc}", file=sys.stderr)  # to the log file: stderr is not a terminal here
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


def _wait_until_serving(server: TotoServer, ready: int, log_start: int, timeout: float = 60.0) -> None:
    """Read the readiness pipe until every port is listening; the pipe's end (every server
    process gone) or the timeout is a failure, reported with the log's error line."""
    o = server.options
    waiting = {str(port) for port in listen_ports(server)}
    deadline = time.monotonic() + timeout
    pid = 0
    buffer = b""
    with os.fdopen(ready, "rb", buffering=0) as pipe:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                _stop_failed_start(pid)
                raise DaemonError(f"the server (pid {pid}) did not listen within {timeout:g}s; see {o.log_file}")
            chunk = pipe.read(4096)
            if not chunk:
                _stop_failed_start(pid)  # a --processes parent may still be restarting its children
                why = _error_line(o.log_file, log_start) or "no error in the log"
                raise DaemonError(f"the server exited while starting: {why} (see {o.log_file})")
            buffer += chunk
            *lines, rest = buffer.split(b"\n")
            buffer = rest
            for line in lines:
                if not pid:
                    pid = int(line) if line.isdigit() else 0
                else:
                    waiting.discard(line.decode("ascii", "replace"))
    ports = ", ".join(map(str, listen_ports(server)))
    print(f"toto: started (pid {pid}, port {ports}, pidfile {o.pidfile}, log {o.log_file})")


def _stop_failed_start(pid: int) -> None:
    """A server that never said it listens is not left running behind a failed --start."""
    if pid and process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _error_line(path: str, start: int) -> str:
    """The last error line this start wrote to the log (else its last line)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    ours = [line for line in lines if line.startswith("toto: error:")]  # the reason, in one line
    marked = [line for line in lines if "error" in line.lower()]
    return (ours or marked or lines or [""])[-1].removeprefix("toto: error: ")
