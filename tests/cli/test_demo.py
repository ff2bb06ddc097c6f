"""``python3 tools/nox.py -s demo`` as the README has a newcomer run it: it serves, Ctrl-C
stops it without a traceback, and a second start reuses the installed packages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from toto.client import TotoClient

from tests.conftest import TESTS
from tests.operations import free_port

ROOT = TESTS.parent


def run_demo(envdir: Path, port: int) -> str:
    """Start the demo, wait until it answers, press Ctrl-C (SIGINT to its process group, as a
    terminal does) and return everything it printed."""
    demo = subprocess.Popen(
        [sys.executable, "tools/nox.py", "-s", "demo", "--envdir", str(envdir), "--", f"--port={port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TOTO_"))},
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                assert TotoClient(f"http://127.0.0.1:{port}", timeout=2).get("hello", name="test")
                break
            except OSError:
                time.sleep(0.2)
        assert demo.poll() is None, demo.communicate()[0]
        os.killpg(demo.pid, signal.SIGINT)
        output = demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    return output


def test_demo_stops_on_ctrl_c_without_a_traceback_and_restarts_without_reinstalling(tmp_path: Path) -> None:
    envdir = tmp_path / "nox"
    first = run_demo(envdir, free_port())
    assert "python -m pip install" in first, first
    second = run_demo(envdir, free_port())
    for output in (first, second):
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "pip install" not in second and "reusing the demo's packages" in second, second
