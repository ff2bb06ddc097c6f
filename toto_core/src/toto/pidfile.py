"""Pidfiles of detached servers: written and locked (``flock``) by the server while it runs,
so a pidfile left by a crash is recognised as stale however the pids were reused."""

from __future__ import annotations

import contextlib
import errno
import os

try:
    import fcntl
except ImportError:  # Windows: no flock; only a single foreground process
    fcntl = None  # type: ignore[assignment]


#: Whether this system has what pidfiles need (``flock``).
LOCKING = fcntl is not None


class PidfileError(Exception):
    """Another server holds the pidfile; the message says which and what to do."""


def child_pidfile(pidfile: str, index: int) -> str:
    """``toto.pid`` -> ``toto.0.pid``: the pidfile of child ``index`` of a group."""
    stem, dot, ext = pidfile.rpartition(".")
    return f"{stem}.{index}.{ext}" if dot and "/" not in ext else f"{pidfile}.{index}"


def child_pidfiles(pidfile: str) -> list[str]:
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
            raise PidfileError(already_running(self.path)) from None
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


def write_pid(path: str) -> None:
    """Write this process's pid to ``path`` (atomically; no lock: a child of a group names itself)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
