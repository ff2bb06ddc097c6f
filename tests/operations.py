"""Helpers for tests that drive the real ``toto`` command (tests/events, tests/cli)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from toto.client import TotoClient
from toto.testing.server import free_port


def toto_command() -> list[str]:
    """The installed ``toto`` script of this Python, else ``python -m toto``."""
    script = Path(sys.executable).parent / "toto"
    if script.exists():
        return [str(script)]
    found = shutil.which("toto")
    return [found] if found else [sys.executable, "-m", "toto"]


def toto(
    *args: str, cwd: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``toto ARGS`` to completion and return its result (output as text)."""
    return subprocess.run(
        [*toto_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )


def http_args() -> list[str]:
    """``--http=NAME`` when this module's servers serve on another transport than Tornado
    (``TOTO_TEST_HTTP``, set per module by tests/conftest.py)."""
    name = os.environ.get("TOTO_TEST_HTTP")
    return [f"--http={name}"] if name else []


def free_ports(count: int) -> int:
    """A free port followed by ``count - 1`` free ones (a group serves on all of them)."""
    for _ in range(200):
        port = free_port()
        taken = False
        for offset in range(1, count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + offset))
                except OSError:
                    taken = True
                    break
        if not taken:
            return port
    raise RuntimeError(f"no {count} free consecutive ports")


def wait_until_answers(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            TotoClient(url, timeout=2).call("echo")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True
