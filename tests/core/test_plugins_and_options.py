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

from tests.conftest import BASIC_APP, FAST, env_with


def run_toto(*args: str, env: dict[str, str] | None = None, cwd: str = BASIC_APP) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toto", *args],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    # Until the distributions are on PyPI: from a checkout, or from a folder of built wheels.
    assert "pip install './plugins/toto_redis'" in out.stderr, out.stderr
    assert "pip install --find-links DIR 'toto-redis'" in out.stderr, out.stderr


def test_toto_plugins_names_distributions_as_toto_plugins_prints_them(plugin_path):
    env = {**env_with(plugin_path, "toto_example"), "TOTO_PLUGINS": "toto-example, Toto_Redis"}
    listed = run_toto("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if not line.startswith(" ")]
    assert names == ["toto-core", "toto-example", "toto-redis"], listed.stdout
    by_entry_point = run_toto("plugins", env={**env, "TOTO_PLUGINS": "example"})
    assert "toto-example 1.2.3" in by_entry_point.stdout and "toto-redis" not in by_entry_point.stdout
    with ServerProcess({**FAST, "database": "example"}, cwd=BASIC_APP, env=env) as srv:
        srv.client().create("by-name", "pw")


def test_an_unknown_name_in_toto_plugins_is_an_error():
    out = run_toto("serve", "--database=memory", env={"TOTO_PLUGINS": "toto-redis,toto-nonesuch"})
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'toto-nonesuch', which is not installed" in lines[0], out.stderr
    assert "toto-redis" in lines[0] and "toto-sql" in lines[0], "it lists what is installed"
    listed = run_toto("plugins", env={"TOTO_PLUGINS": "toto-nonesuch"})
    assert listed.returncode == 1 and "toto-nonesuch" in listed.stderr


def test_a_hook_name_with_a_typo_is_a_startup_error_naming_the_plugin_and_the_hook(plugin_path):
    env = env_with(plugin_path, "toto_example_typo")
    out = run_toto("serve", "--database=memory", env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "toto-example-typo 0.0.1" in lines[0] and "toto_register_serializer," in lines[0], lines[0]
    assert "did you mean toto_register_serializers?" in lines[0], lines[0]


def test_a_plugin_that_fails_to_import_fails_the_server_in_one_line(plugin_path):
    env = env_with(plugin_path, "toto_example_broken", "toto_example")
    out = run_toto("serve", "--database=example", env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "toto-example-broken 0.0.1" in lines[0] and "ModuleNotFoundError" in lines[0], lines[0]
    assert "toto_example_missing_dependency" in lines[0], lines[0]
    debug = run_toto("serve", "--database=example", "--debug", env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr, debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == lines[0]
    # The broken plugin is listed with its error; the others are listed as always.
    listed = run_toto("plugins", env=env)
    assert listed.returncode == 1, listed.stderr
    assert "toto-example 1.2.3" in listed.stdout and "toto-redis" in listed.stdout
    assert "toto-example-broken 0.0.1\n  failed to load: failed to import" in listed.stdout, listed.stdout
    assert len(listed.stderr.strip().splitlines()) == 1 and "toto-example-broken" in listed.stderr
    # Leaving it out serves.
    env = {**env, "TOTO_PLUGINS": "toto-example"}
    with ServerProcess({**FAST, "database": "example"}, cwd=BASIC_APP, env=env) as srv:
        srv.client().create("unbroken", "pw")


def test_every_hook_call_is_traced_with_its_arguments_and_result(plugin_path, start_server):
    env = {**env_with(plugin_path, "toto_example_route"), "TOTO_TRACE_HOOKS": "1", "TOTO_PLUGINS": "example_route"}
    srv = start_server(env=env, database="")
    srv.client().call("echo", {"x": 1})
    srv.stop()
    output = srv.output()
    for call in (
        "toto_register_authenticators() [toto-core 0.1.0] -> [{'user_id':",
        "toto_add_options(options=<toto.options.Options",
        "toto_register_storage() [toto-core 0.1.0] -> [{'memory':",
        "toto_register_event_buses() [toto-core 0.1.0] -> [{'local':",
        "toto_register_serializers() [toto-core 0.1.0] -> [[<toto.serializers.JsonSerializer",
        "toto_default_storage() [no plugin] -> None",
        "toto_register_routes(server=<toto.server.TotoServer",
        ") [toto-example-route 0.0.1] -> [[Route(path='_hello'",
        "toto_startup(server=<toto.server.TotoServer",
        "toto_shutdown(server=<toto.server.TotoServer",
    ):
        assert call in output, (call, output)


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


def test_uvloop_serves_when_installed_else_says_how_to_install_it(start_server):
    if importlib.util.find_spec("uvloop") is not None:
        srv = start_server(event_loop="uvloop", logging="info")
        assert srv.client().call("echo", {"n": 1}) == {"n": 1}
        assert "event loop: uvloop" in srv.output()
    else:
        out = run_toto("serve", "--event_loop=uvloop")
        assert out.returncode == 2 and "pip install uvloop" in out.stderr


def test_missing_method_module_is_one_clear_line(tmp_path):
    out = run_toto("serve", "--method_module=not_there", cwd=str(tmp_path))
    assert out.returncode == 2 and "not_there" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_option_precedence(tmp_path):
    """keyword arguments < config file < environment < command line."""
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
    env = dict(os.environ, TOTO_MAX_BATCH="9", TOTO_PORT="4321", TOTO_ROOT="/env")
    out = subprocess.run(
        [sys.executable, str(script), "--root=/cli"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert out.stdout.split() == ["from-config", "9", "4321", "/cli"], out.stderr


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
