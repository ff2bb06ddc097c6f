"""``toto`` subcommands: help, one-line errors, plugins, call, new."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP
from tests.operations import free_ports, toto, toto_command


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
    assert '"pytest' in (project / "pyproject.toml").read_text()  # the tests' one need is listed
    assert "python -m pytest" in made.stdout
    # Right after `toto new`, as its README says: python -m pytest (tests/ in process, TestClient).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout
    assert "ServerProcess" not in (project / "tests" / "test_app.py").read_text()
    exists = one_line_error(toto("new", "myproject", cwd=str(tmp_path)))
    assert "already exists" in exists


def test_version() -> None:
    from toto import __version__

    result = toto("--version")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, f"toto {__version__}", "")


@pytest.mark.parametrize(
    "command", ["toto plugins", "toto plugins --json", "toto --help", "toto serve --help", "toto call --help"]
)
def test_output_cut_short_by_its_reader_ends_quietly(command: str) -> None:
    """``toto plugins | head -1``: the reader leaves early; no BrokenPipeError, no traceback."""
    script = f"{' '.join(toto_command())} {command.removeprefix('toto ')} | head -c 5"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert len(result.stdout) == 5


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        # A bad command line or configuration: status 2.
        (["frobnicate"], 2, "unknown command"),
        (["serve", "--port=x"], 2, "--port"),
        (["serve", "--hmac_mode=sha1"], 2, "choose one of"),
        (["serve", "no-such.conf"], 2, "cannot read config file"),
        (["new", "x", "--template=nope"], 2, "--template"),
        (["plugins", "--bogus"], 2, "--bogus"),
        (["call", "http://127.0.0.1:1"], 2, "METHOD"),
        (["call", "http://127.0.0.1:1", "echo", "--hmac_mode=sha1"], 2, "hmac_mode 'sha1' is not installed"),
        (["call", "http://127.0.0.1:1", "echo", "--serializer=yaml"], 2, "serializer 'yaml' is not installed"),
        # A failure to do what was asked: status 1.
        (["call", "http://127.0.0.1:1", "echo"], 1, "cannot reach"),
        (["call", "http://127.0.0.1:1", "echo", "{nope"], 1, "not valid JSON"),
        (["serve", "--stop", "--pidfile=run/none.pid"], 1, "no server is running"),
        (["new", "a-file/project"], 1, "a-file"),
    ],
)
def test_every_error_is_one_line_with_its_status(tmp_path: Path, args: list[str], status: int, says: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = toto(*args, cwd=str(tmp_path))
    line = one_line_error(result, status)
    assert says in line and "Traceback" not in result.stderr, line
