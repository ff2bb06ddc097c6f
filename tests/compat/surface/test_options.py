"""The original's options and config files, through ``toto serve``: each option served or
refused in one line, config file mistakes with file, line and what to write, ``--port``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from toto.testing import unique_user as user

from tests.compat.surface.conftest import APP
from tests.operations import free_ports, toto, toto_command
from tests.sql.conftest import drop_tables, mysql_url  # noqa: F401  (a fixture used here)

#: Every option the original HEAD defines (its toto/server.py, service.py, handler.py,
#: dbconnection.py, worker.py and workerconnection.py), except those other parts of Toto
#: serve (hmac_enabled, the cookie and WebSocket options).
ORIGINAL_OPTIONS = """
    port root method_module autoreload remote_event_receivers event_mode event_init_module event_port
    startup_function client_side_worker_path daemon processes pidfile start stop restart nodaemon debug
    allow_origin method_select bson_enabled msgpack_enabled database db_host db_port mysql_database mysql_user
    mysql_password mysql_uuid_account_id postgres_database postgres_user postgres_password postgres_min_connections
    postgres_max_connections mongodb_database redis_database session_ttl anon_session_ttl session_renew
    anon_session_renew worker_bind_address worker_socket_address control_socket_address command compression_module
    serialization_module worker_compression_module worker_serialization_module worker_serialization_mime
    worker_timeout worker_auto_retry worker_retry_count worker_address worker_transport
""".split()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_every_option_of_the_original_is_known_to_serve() -> None:
    help_text = toto("serve", "--help").stdout
    missing = [name for name in ORIGINAL_OPTIONS if f"--{name} " not in help_text]
    assert not missing, f"not in toto serve --help: {missing}"


@pytest.mark.parametrize(
    ("option", "replacement"),
    [
        ("--event_port=8999", "event_bus"),
        ("--remote_event_receivers=tcp://10.0.0.2:8999", "event_url"),
        ("--event_mode=only", "event_bus"),
        ("--worker_address=tcp://127.0.0.1:55555", "toto.tasks.TaskQueue"),
        ("--client_side_worker_path=workers", "ZeroMQ worker subsystem"),
        ("--mysql_uuid_account_id=true", "user_id"),
        ("--postgres_max_connections=10", "pool"),
    ],
)
def test_a_refused_option_says_what_replaces_it(option: str, replacement: str) -> None:
    line = one_line_error(toto("serve", option, cwd=APP))
    assert option.split("=")[0] in line and replacement in line


CONFIG_MISTAKES = [
    ("port = 8888\ndebug\n", "line 2: bare word 'debug'", "debug = True"),
    ("prot = 8888\n", "line 1: unknown option 'prot'", "did you mean --port?"),
    ("database = mysql\n", "line 1: 'mysql' is not defined", "database = 'mysql'"),
    ("port = 'eighty'\n", "line 1: bad value for --port", "'eighty'"),
    ("port = 8888\nmethod_module = 'methods\n", "line 2:", "name = value"),
    ("event_port = 8787\n", "line 1: option --event_port of the original Toto is not served", "event_bus"),
    ("remote_instance = 'tcp://localhost:8787'\n", "line 1: unknown option 'remote_instance'", "--help"),
    ("daemon = 'begin'\n", "line 1: bad value for --daemon: 'begin'", "start | stop | restart"),
    ("x = 1 / 0\n", "line 1: ZeroDivisionError", "division by zero"),
]


@pytest.mark.parametrize(("text", "where", "what"), CONFIG_MISTAKES)
def test_a_config_file_mistake_is_one_line_with_file_line_and_what_to_write(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text(text)
    line = one_line_error(toto("serve", str(conf), cwd=APP))
    assert str(conf) in line
    assert where in line and what in line


def test_a_config_file_may_compute_values_with_helpers_of_its_own(start_server, tmp_path: Path) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text(
        "import os\n"
        "_base = 'meth'\n"
        "def suffix():\n"
        "    unused_local = 1\n"
        "    return 'ods'\n"
        "method_module = _base + suffix()\n"
        "if os.environ.get('NO_SUCH_VARIABLE_HERE'):\n"
        "    debug = True\n"
        "database = 'none'  # the original's: no database, here memory\n"
        "event_mode = 'on'\n"
        "autoreload = False\n"
    )
    server = start_server(cwd=APP, args=[str(conf)])
    assert server.client().call("config")["database"] == "memory"


def test_daemon_in_a_config_file_starts_and_stops_and_nodaemon_overrides_it(start_server, tmp_path: Path) -> None:
    port = free_ports(1)
    conf = tmp_path / "site.conf"
    conf.write_text(
        f"daemon = 'start'\nport = {port}\naddress = '127.0.0.1'\ndatabase = 'memory'\n"
        f"pidfile = {str(tmp_path / 'toto.pid')!r}\nlogging = 'warning'\n"
    )
    try:
        started = toto("serve", str(conf), cwd=APP)
        assert started.returncode == 0, started.stderr
        assert (tmp_path / "toto.pid").exists(), "daemon = 'start' detached and wrote the pidfile"
        from toto.client import TotoClient

        assert TotoClient(f"http://127.0.0.1:{port}").call("greet")["greeting"] == "hello world"
    finally:
        stopped = toto("serve", str(conf), "--stop", cwd=APP)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "toto.pid").exists(), "--stop on the command line wins over daemon = 'start'"
    # --nodaemon: the same file serves in the foreground (the test's server process).
    foreground = start_server(cwd=APP, args=[str(conf), "--nodaemon"])
    assert foreground.client().call("greet")["greeting"] == "hello world"
    assert not (tmp_path / "toto.pid").exists()


def test_autoreload_restarts_on_a_changed_method(start_server, tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    server = start_server(cwd=str(app), autoreload=True, logging="info")
    client = server.client()
    assert client.call("greet")["greeting"] == "hello world"
    greet = app / "methods" / "greet.py"
    greet.write_text(greet.read_text().replace('"hello "', '"hi "'))
    deadline = time.monotonic() + 30
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = server.client().call("greet")["greeting"]
        except OSError:  # between the old child and the new one
            answer = None
        if answer == "hi world":
            break
        time.sleep(0.2)
    assert answer == "hi world", server.output()
    assert "reloading on changes to" in server.output()


# -- the database options ---------------------------------------------------------------------------


def test_db_host_and_redis_database_become_the_database_url(start_server, redis_url: str, prefix: str) -> None:
    host, port, number = re.fullmatch(r"redis://([^:]+):(\d+)/(\d+)", redis_url).groups()  # type: ignore[union-attr]
    server = start_server(
        cwd=APP, database="redis", db_host=host, db_port=port, redis_database=number, redis_prefix=prefix
    )
    client = server.client()
    assert client.call("config")["database_url"] == redis_url
    name = user()
    client.create(name, "pw")
    raw = redis.Redis.from_url(redis_url)
    try:
        assert raw.exists(f"{prefix}account:{name}"), "the account is in that Redis"
    finally:
        raw.close()


@pytest.fixture
def table_prefix(mysql_url: str) -> Iterator[str]:  # noqa: F811
    name = f"seed{uuid.uuid4().hex[:8]}_"
    yield name
    drop_tables(mysql_url, name)


def test_the_mysql_options_become_the_database_url(start_server, mysql_url: str, table_prefix: str) -> None:  # noqa: F811
    host, port, database = re.fullmatch(r"mysql://root@([^:]+):(\d+)/(\w+)", mysql_url).groups()  # type: ignore[union-attr]
    server = start_server(
        cwd=APP,
        database="mysql",
        db_host=host,
        db_port=port,
        mysql_user="root",
        mysql_database=database,
        sql_table_prefix=table_prefix,
    )
    client = server.client()
    assert client.call("config")["database_url"] == mysql_url
    name = user()
    assert client.create(name, "pw")["user_id"] == name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database=redis", "--db_host=h", "--database_url=redis://h:6379/0"], "not both"),
        (["--database=memory", "--db_host=h"], "db_host need database = 'mysql'"),
        (["--database=json", "--db_host=site.json"], "database = 'sqlite'"),
    ],
)
def test_database_options_that_cannot_be_mapped_are_one_line(args: list[str], message: str) -> None:
    assert message in one_line_error(toto("serve", *args, cwd=APP))


# -- serializers, events, port --------------------------------------------------------------------


def test_bson_and_msgpack_enabled_switch_the_types(start_server) -> None:
    import msgpack

    body = msgpack.packb({"method": "greet", "parameters": {}})
    on = start_server(cwd=APP, msgpack_enabled=True, bson_enabled=True)
    status, _, answer = on.client().request(body, content_type="application/msgpack", sign=False)
    assert status == 200 and msgpack.unpackb(answer)["result"]["greeting"] == "hello world"
    off = start_server(cwd=APP, msgpack_enabled=False, bson_enabled=False)
    for content_type in ("application/msgpack", "application/bson"):
        status, _, answer = off.client().request(body, content_type=content_type, sign=False)
        assert status == 415 and json.loads(answer)["error"]["code"] == 1012, content_type


def test_port_outside_the_range_is_refused_and_zero_is_any_free_port(tmp_path: Path) -> None:
    for port in ("70000", "-1", "http"):
        assert "--port" in one_line_error(toto("serve", f"--port={port}", cwd=APP))
    assert "one process in the foreground" in one_line_error(toto("serve", "--port=0", "--processes=2", cwd=APP))
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*toto_command(), "serve", "--port=0", "--address=127.0.0.1", "--database=memory", "--logging=info"],
            cwd=APP,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < deadline and process.poll() is None:
            found = re.search(r"port 0: listening on free port (\d+)", log.read_text())
            time.sleep(0.05)
        assert found, log.read_text()
        from toto.client import TotoClient

        port = int(found.group(1))
        assert port > 0
        assert TotoClient(f"http://127.0.0.1:{port}").call("greet")["greeting"] == "hello world"
        assert f"http://127.0.0.1:{port}" in log.read_text(), "the listening line names the real port"
    finally:
        process.terminate()
        process.wait(10)
