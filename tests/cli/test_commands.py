"""``toto`` subcommands: help, one-line errors, plugins, call, new."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP
from tests.operations import free_ports, toto


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    options = {"database": "memory", "logging": "warning", "password_cost": 10, "method_module": "methods"}
    with ServerProcess(options, cwd=BASIC_APP) as srv:
        yield srv


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "--help"], ["new", "--help"], ["plugins", "--help"], ["call", "--help"]]
)
def test_every_command_has_help(args: list[str]) -> None:
    result = toto(*args)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_serve_help_lists_operations_options() -> None:
    text = toto("serve", "--help").stdout
    for option in (
        "--start",
        "--stop",
        "--restart",
        "--pidfile",
        "--log_file",
        "--processes",
        "--reuse_port",
        "--drain_timeout",
        "--stop_timeout",
        "--event_bus",
    ):
        assert option in text


def test_errors_are_one_line() -> None:
    assert "unknown command 'frobnicate'" in one_line_error(toto("frobnicate"), 2)
    assert "--bogus" in one_line_error(toto("serve", "--bogus=1"), 2)
    assert "--processes" in one_line_error(toto("serve", "--processes=x"), 2)
    assert "--template" in one_line_error(toto("new", "x", "--template=nope"), 2)
    assert "METHOD" in one_line_error(toto("call", "http://127.0.0.1:1"), 2)


def test_plugins_lists_builtins_and_what_they_register() -> None:
    result = toto("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("toto-core ")
    assert "event buses: local, machine" in result.stdout
    report = json.loads(toto("plugins", "--json").stdout)
    core = report[0]
    assert core["name"] == "toto-core" and "toto_register_event_buses" in core["hooks"]
    assert "memory" in core["registers"]["storage"]
    assert core["registers"]["hmac modes"] == ["off", "session_key", "user_id"]


def test_call_prints_the_result(server: ServerProcess) -> None:
    result = toto("call", server.url, "echo", '{"greeting": "héllo", "n": [1, 2]}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "héllo", "n": [1, 2]}


def test_call_signs_in(server: ServerProcess) -> None:
    created = toto("call", server.url, "whoami", "--user_id=cli-user", "--password=pw-123456", "--create")
    assert json.loads(created.stdout) == {"user_id": "cli-user"}, created.stderr
    again = toto("call", server.url, "whoami", "--user_id=cli-user", "--password=pw-123456")
    assert json.loads(again.stdout) == {"user_id": "cli-user"}, again.stderr
    wrong = one_line_error(toto("call", server.url, "whoami", "--user_id=cli-user", "--password=nope"))
    assert wrong.startswith("toto call: error: account.login failed") and "(code 10" in wrong


def test_call_errors_are_one_line(server: ServerProcess) -> None:
    assert "code 1000" in one_line_error(toto("call", server.url, "fail"))
    assert "not valid JSON" in one_line_error(toto("call", server.url, "echo", "{nope"))
    assert "code 1004" in one_line_error(toto("call", server.url, "whoami"))
    port = free_ports(1)
    assert "cannot reach" in one_line_error(toto("call", f"http://127.0.0.1:{port}", "echo"))


@pytest.mark.parametrize("template", ["simple", "chat"])
def test_new_project_passes_its_own_tests(tmp_path: Path, template: str) -> None:
    made = toto("new", "myproject", f"--template={template}", cwd=str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "myproject"
    for path in ("README.md", "toto.conf", "methods/__init__.py", "tests/test_app.py"):
        assert (project / path).exists(), path
    assert "myproject" in (project / "README.md").read_text()
    assert not list(project.rglob("*.py-tpl"))
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout
    exists = one_line_error(toto("new", "myproject", cwd=str(tmp_path)))
    assert "already exists" in exists
