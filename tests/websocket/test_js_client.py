"""clients/js (toto-client) sockets under Node's own test runner, against real servers in every hmac_mode."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import TESTS

CLIENT = TESTS.parent / "clients" / "js"


def test_node_socket_tests(socket_server) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: run `python tests/services.py` (installs nodejs)")
    servers = {mode: socket_server(hmac_mode=mode) for mode in ("user_id", "session_key", "off")}
    env = {f"TOTO_WS_{mode.upper()}": server.url for mode, server in servers.items()}
    run = subprocess.run(
        [node, "--experimental-websocket", "--test", "--test-reporter=tap", "test-socket/"],
        cwd=CLIENT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout, run.stdout[-3000:]
    assert int(run.stdout.split("# pass ", 1)[1].split()[0]) == 3, run.stdout[-3000:]
