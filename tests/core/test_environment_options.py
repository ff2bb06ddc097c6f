"""Options from the environment: ``TOTO_<NAME>=value``, over the config file, under the command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from toto.options import ENV_NOT_OPTIONS, ENV_TOOLING_PREFIXES
from toto.testing import get_json

from tests.core.test_plugins_and_options import run_toto

ROOT = Path(__file__).resolve().parents[2]


def health_at(server, path: str) -> bool:  # type: ignore[no-untyped-def]
    status, body = get_json(server.url, path)
    return status == 200 and isinstance(body, dict) and body.get("status") == "ok"


def test_the_environment_sets_an_option(start_server):
    server = start_server(env={"TOTO_HEALTH_PATH": "from_env"})
    assert health_at(server, "/from_env") and not health_at(server, "/_health")


def test_the_command_line_wins_over_the_environment(start_server):
    # The test server's port is on its command line: it listens there, not on TOTO_PORT's.
    server = start_server(env={"TOTO_HEALTH_PATH": "from_env", "TOTO_PORT": "1"}, health_path="from_cli")
    assert health_at(server, "/from_cli") and not health_at(server, "/from_env")


def test_the_environment_wins_over_the_config_file(start_server, tmp_path):
    conf = tmp_path / "site.conf"
    conf.write_text("health_path = 'from_conf'\nmax_batch = 7\n")
    server = start_server(args=[str(conf)], env={"TOTO_HEALTH_PATH": "from_env"})
    assert health_at(server, "/from_env") and not health_at(server, "/from_conf")


@pytest.mark.parametrize(
    "variable, value",
    [
        ("TOTO_PORT", "abc"),
        ("TOTO_DEBUG", "maybe"),
        ("TOTO_HMAC_MODE", "sha1"),
        ("TOTO_EVENT_PORT", "8001"),  # an option of the original's this Toto refuses, as on the command line
    ],
)
def test_a_bad_value_in_the_environment_exits_2_with_one_line_naming_the_variable(variable, value):
    out = run_toto("serve", env={variable: value})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"toto: error: environment variable {variable}: "), out.stderr


def test_a_variable_that_is_no_option_warns_once_with_a_suggestion_and_the_server_serves(start_server):
    server = start_server(
        env={
            "TOTO_HEALHT_PATH": "typo",
            "TOTO_REMOTE_INSTANCES": "tcp://127.0.0.1:8787",  # retired by the original itself
            "TOTO_TRACE_HOOKS": "0",  # not an option: read by toto.plugins
        }
    )
    assert server.client().call("echo", {"n": 1}) == {"n": 1}
    output = server.output()
    assert output.count("TOTO_HEALHT_PATH") == 1, output
    assert "environment variable TOTO_HEALHT_PATH is not a toto option (did you mean TOTO_HEALTH_PATH?)" in output
    assert output.count("option remote_instances of the original Toto is ignored") == 1, output
    assert "TOTO_TRACE_HOOKS" not in output
    assert health_at(server, "/_health")


#: A TOTO_* name read from the environment (by ``os.environ.get``, ``os.getenv``, ``environ[...]``,
#: a nox session's ``env[...]``) or kept in a constant (as ``toto.plugins.ENV_ONLY``).
READ = re.compile(r"(?:environ\.get\(|environ\[|getenv\(|env\[|= )[\"'](TOTO_[A-Z0-9_]*[A-Z0-9])[\"']")


def test_every_toto_variable_the_code_reads_is_left_out_of_the_options():
    """A TOTO_* name read somewhere in toto-core, a plugin, the tests, the nox sessions or the
    benchmark must not be warned about as a typo (a server started by them inherits it)."""
    read = set()
    sources = ("toto_core/src/**/*.py", "plugins/*/src/**/*.py", "tests/**/*.py", "bench/**/*.py", "noxfile.py")
    for source in [path for pattern in sources for path in ROOT.glob(pattern)]:
        read.update(READ.findall(source.read_text()))
    assert read, "the scan found the names"
    assert {n for n in read if n not in ENV_NOT_OPTIONS and not n.startswith(ENV_TOOLING_PREFIXES)} == set()
    assert "TOTO_PLUGINS" in read
