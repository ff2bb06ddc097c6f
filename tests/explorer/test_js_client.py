"""clients/js (npm package toto-client) under Node's own test runner, against real servers (issue 16)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import TESTS
from tests.explorer.conftest import DESCRIBED, TYPED_APP

CLIENT = TESTS.parent / "clients" / "js"


def test_node_test_runner(start_server):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: run `python tests/services.py` (installs nodejs; Node 18+ runs toto-client)")
    servers = {
        mode: start_server(cwd=TYPED_APP, **DESCRIBED, hmac_mode=mode) for mode in ("user_id", "session_key", "off")
    }
    env = {f"TOTO_URL_{mode.upper()}": server.url for mode, server in servers.items()}
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", "test/"],
        cwd=CLIENT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout, run.stdout[-3000:]
    passed = int(run.stdout.split("# pass ", 1)[1].split()[0])
    assert passed == 17, run.stdout[-3000:]  # every test in clients/js/test ran


def test_the_explorer_serves_the_same_client_file(described):
    from tests.explorer.conftest import http

    status, headers, body = http(described.url + "/_explorer/toto-client.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert body == (CLIENT / "src" / "toto-client.js").read_bytes()


TSC = CLIENT / "node_modules" / ".bin" / "tsc"
TSC_FLAGS = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022"]


def test_declarations_and_generated_stubs_type_check(described):
    """toto-client.d.ts and the stubs generated from a server's OpenAPI document are valid, strict
    TypeScript that accepts a correct use and refuses a wrong parameter type."""
    if not TSC.exists():  # typescript is the package's one devDependency (pinned in package.json)
        install = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--ignore-scripts"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert install.returncode == 0 and TSC.exists(), "npm install in clients/js failed:\n" + install.stderr[-3000:]
    types = CLIENT / "typecheck"  # outside test/: node --test runs every file below test/
    generate = subprocess.run(
        ["node", str(CLIENT / "bin" / "toto-client-generate.js"), described.url + "/openapi.json", str(types / "api")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generate.returncode == 0, generate.stderr
    # The package imports itself by name ("toto-client"), as an application that installed it would.
    link = CLIENT / "node_modules" / "toto-client"
    if not link.exists():
        link.symlink_to("..", target_is_directory=True)
    good = subprocess.run([str(TSC), *TSC_FLAGS, "use.ts"], cwd=types, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stdout + good.stderr
    wrong = subprocess.run([str(TSC), *TSC_FLAGS, "wrong.ts"], cwd=types, capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and "Type 'string' is not assignable to type 'number'" in wrong.stdout, wrong.stdout
