"""The plugin kernel (entry points, duplicates, missing backends) and option handling."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from toto.client import TotoClient
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST, TESTS


def run_toto(*args: str, env: dict[str, str] | None = None, cwd: str = BASIC_APP) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toto", *args],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """pip-install the third-party example plugins into their own directory, as a user would."""
    target = tmp_path_factory.mktemp("site")
    for name in ("toto_example", "toto_example_clash", "toto_example_route"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target / name),
                str(TESTS / "plugins" / name),
            ],
            check=True,
            timeout=300,
        )
    return str(target)


def env_with(plugin_path: str, *names: str) -> dict[str, str]:
    paths = [os.path.join(plugin_path, n) for n in names]
    return {"PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


def test_third_party_plugin_storage_is_selected_by_name(plugin_path):
    env = env_with(plugin_path, "toto_example")
    with ServerProcess({**FAST, "database": "example", "example_greeting": "hello"}, cwd=BASIC_APP, env=env) as srv:
        c = srv.client()
        assert c.call("db") == {"type": "dict", "value": {"backend": "toto-example", "greeting": "hello"}}
        c.create("plugin-user", "pw")
        assert c.call("whoami") == {"user_id": "plugin-user"}


def test_plugin_options_appear_in_help(plugin_path):
    out = run_toto("serve", "--help", env=env_with(plugin_path, "toto_example"))
    assert out.returncode == 0
    assert "--example_greeting" in out.stdout and "toto-example" in out.stdout
    for option in (
        "port",
        "address",
        "method_module",
        "database",
        "database_url",
        "hmac_mode",
        "session_ttl",
        "session_renew",
        "anon_session_ttl",
        "max_body_size",
        "method_select",
        "root",
        "allow_origin",
        "debug",
        "logging",
        "event_bus",
    ):
        assert f"--{option}" in out.stdout


def test_two_plugins_offering_one_name_is_a_startup_error(plugin_path):
    out = run_toto("serve", "--database=example", env=env_with(plugin_path, "toto_example", "toto_example_clash"))
    assert out.returncode == 2
    assert "toto-example 1.2.3" in out.stderr and "toto-example-clash 0.0.1" in out.stderr
    # Limiting the loaded plugins resolves it.
    env = {**env_with(plugin_path, "toto_example", "toto_example_clash"), "TOTO_PLUGINS": "example"}
    with ServerProcess({**FAST, "database": "example"}, cwd=BASIC_APP, env=env) as srv:
        assert srv.client().call("db")["value"]["backend"] == "toto-example"


def test_the_default_database_is_the_one_a_plugin_names_else_memory(plugin_path):
    env = {**env_with(plugin_path, "toto_example_clash"), "TOTO_PLUGINS": "example_clash"}
    with ServerProcess({**FAST, "logging": "info"}, cwd=BASIC_APP, env=env) as srv:
        srv.client().create("default-user", "pw")
        assert "(database: example," in srv.output()
    with ServerProcess({**FAST, "logging": "info"}, cwd=BASIC_APP, env={"TOTO_PLUGINS": ""}) as srv:
        srv.client().create("default-user", "pw")
        assert "(database: memory," in srv.output()


def test_plugin_routes_answer_fixed_paths_below_root(plugin_path):
    import json

    env = env_with(plugin_path, "toto_example_route")
    with ServerProcess({**FAST, "database": "memory", "root": "/api"}, cwd=BASIC_APP, env=env) as srv:
        c = TotoClient(srv.url)
        status, headers, body = c.request(
            b"", "/api/_hello?a=1&a=2", method="GET", headers={"User-Agent": "route-test"}, sign=False
        )
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert json.loads(body) == {
            "database": "memory",
            "path": "/api/_hello",
            "route_path": "_hello",
            "query": {"a": ["1", "2"]},
            "agent": "route-test",
        }
        status, headers, body = c.request(b"", "/api/_hello", method="HEAD", sign=False)
        assert (status, body) == (200, b"") and int(headers["Content-Length"]) > 0
        status, headers, body = c.request(b"abc", "/api/echo", content_type="text/plain", sign=False)
        assert (status, body, headers["X-Seen"]) == (201, b"cba", "yes")
        status, _, _ = c.request(b"{}", "/api/_hello", sign=False)
        assert status == 405
        # Everything else under root is still a method call.
        assert TotoClient(srv.url + "/api").call("echo", {"x": 1}) == {"x": 1}


def test_toto_plugins_lists_versions_and_hooks(plugin_path):
    out = run_toto("plugins", env=env_with(plugin_path, "toto_example"))
    assert out.returncode == 0
    assert "toto-example 1.2.3" in out.stdout and "toto_register_storage" in out.stdout


def test_missing_backend_names_the_pip_command():
    out = run_toto("serve", "--database=cassandra-db", env={"TOTO_PLUGINS": ""})
    assert out.returncode == 2 and "cassandra-db" in out.stderr
    out = run_toto("serve", "--database=redis", env={"TOTO_PLUGINS": ""})
    assert out.returncode == 2 and "pip install 'toto-redis'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--port=abc"],
        ["--hmac_mode=sha1"],
        ["--no_such_option=1"],
        ["--debug=maybe"],
        ["--method_select=body"],
        ["--event_loop=tokio"],
    ],
)
def test_bad_option_exits_2_with_one_line(args):
    out = run_toto("serve", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("toto: error:"), out.stderr


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_event_loop_choices_serve(start_server, loop):
    srv = start_server(event_loop=loop, logging="info")
    assert srv.client().call("echo", {"loop": loop}) == {"loop": loop}
    expected = "asyncio" if loop == "asyncio" or importlib.util.find_spec("uvloop") is None else "uvloop"
    assert f"event loop: {expected}" in srv.output()


def test_uvloop_serves_when_installed_else_names_the_extra(start_server):
    if importlib.util.find_spec("uvloop") is not None:
        srv = start_server(event_loop="uvloop", logging="info")
        assert srv.client().call("echo", {"n": 1}) == {"n": 1}
        assert "event loop: uvloop" in srv.output()
    else:
        out = run_toto("serve", "--event_loop=uvloop")
        assert out.returncode == 2 and "pip install 'toto-core[speed]'" in out.stderr


def test_missing_method_module_is_one_clear_line(tmp_path):
    out = run_toto("serve", "--method_module=not_there", cwd=str(tmp_path))
    assert out.returncode == 2 and "not_there" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_option_precedence(tmp_path):
    """keyword arguments < config file < command line."""
    (tmp_path / "site.conf").write_text("allow_origin = 'from-config'\nmax_batch = 7\nroot = '/conf'\n")
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        "from toto.server import TotoServer\n"
        "s = TotoServer('site.conf', argv=sys.argv[1:], allow_origin='from-kwargs', max_batch=3, port=1234,"
        " method_module='json')\n"
        "print(s.options.allow_origin, s.options.max_batch, s.options.port, s.options.root)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script), "--root=/cli"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["from-config", "7", "1234", "/cli"], out.stderr


def test_toto_command_and_python_m_both_serve():
    from toto.testing.server import free_port

    port = free_port()
    toto_bin = Path(sys.executable).with_name("toto")
    assert toto_bin.exists()
    proc = subprocess.Popen(
        [str(toto_bin), "serve", f"--port={port}", "--address=127.0.0.1", "--logging=warning"], cwd=BASIC_APP
    )
    try:
        import time

        from toto.client import TotoClient

        for _ in range(100):
            try:
                assert TotoClient(f"http://127.0.0.1:{port}").call("echo", {"via": "toto"}) == {"via": "toto"}
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("toto serve did not answer")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_plugin_helpers_read_options_and_hide_passwords() -> None:
    from types import SimpleNamespace

    from toto.options import option_value
    from toto.urls import redact_url

    assert option_value(SimpleNamespace(x=""), "x", 5) == 5
    assert option_value(SimpleNamespace(x=0), "x", 5) == 0
    assert option_value(None, "x", 5) == 5
    assert redact_url("redis://app:s3cret@db:6379/0") == "redis://app:***@db:6379/0"
    assert redact_url("mongodb://:s3cret@h1,h2/db") == "mongodb://***@h1,h2/db"
    assert redact_url("redis://db:6379/0") == "redis://db:6379/0"
