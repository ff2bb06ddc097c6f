"""Issue 25: what the original Toto's own test suite checks, in tests of our own (docs/compat.md).

The app (tests/compat/apps/original) is written the 2016 original's way: class-level
before/after handlers, callback-style and ``tornado.gen.Task`` methods, the original's
account package. Each test names the behaviour of the original's suite it covers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from toto.testing import unique_user

from tests.compat.conftest import exchange

APP = str(Path(__file__).parent / "apps" / "original")
JSON = {"content-type": "application/json"}


@pytest.fixture
def original(start_server):
    def start(**options):
        return start_server(cwd=APP, **{"database": "memory", "debug": True, **options})

    return start


def _call(url, method, parameters, headers=None, target="/"):
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    return exchange(url + target, body, {**JSON, **(headers or {})})


def _wait_for(server, pattern, count):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.findall(pattern, server.output())
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} seen fewer than {count} times:\n{server.output()[-3000:]}")


# -- methods of every style, parameters in the original's shapes -------------------------
@pytest.mark.parametrize("method", ["echo", "task_echo"])
def test_each_style_of_method_answers_its_parameters(original, method):
    server = original()
    parameters = {"arg1": 1, "arg2": "hello"}
    assert _call(server.url, method, parameters).json["result"] == {"got": parameters}
    batch = {f"k{i}": {"method": method, "parameters": {"n": i}} for i in range(3)}
    answer = exchange(server.url, json.dumps({"batch": batch}).encode(), JSON).json["batch"]
    assert answer == {f"k{i}": {"result": {"got": {"n": i}}} for i in range(3)}


def test_an_asynchronous_method_may_respond_from_its_own_thread(original):
    """The original's return_value_async: ``@asynchronous``, answered by a thread it started."""
    import http.client

    server = original()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        body = json.dumps({"method": "later", "parameters": {"a": 1}}).encode()
        connection.request("POST", "/", body=body, headers=JSON)
        assert json.loads(connection.getresponse().read()) == {"result": {"got": {"a": 1}}}
    finally:
        connection.close()


def test_removed_tornado_callback_is_refused_with_its_replacement(original):
    error = _call(original().url, "task_echo", {"old_callback": True}).json["error"]
    assert error["code"] == 1000 and "create a Future" in error["value"]


def test_parameters_in_the_original_shapes(original):
    url = original().url
    form = exchange(
        url + "/echo", b"arg1=1&arg2=hello&arg2=again", {"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.json["result"]["got"] == {"arg1": ["1"], "arg2": ["hello", "again"]}
    query = exchange(url + "/echo?arg1=1&arg2=hello", method="GET")
    assert query.json["result"]["got"] == {"arg1": "1", "arg2": "hello"}
    boundary = "b0undary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nabc\r\n--{boundary}--\r\n"
    ).encode()
    answer = exchange(url + "/upload", multipart, {"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.json["result"] == {"arguments": {"note": ["hi"]}, "files": {"doc": [["a.txt", "text/plain", "abc"]]}}
    # A body object without "parameters" is itself the parameters, "method" included.
    bare = exchange(url, json.dumps({"method": "echo"}).encode(), JSON)
    assert bare.json["result"] == {"got": {"method": "echo"}}
    named = exchange(url + "/echo", json.dumps({"name": "x"}).encode(), JSON)
    assert named.json["result"] == {"got": {"name": "x"}}
    with_parameters = exchange(url + "/echo", json.dumps({"parameters": {"a": 1}}).encode(), JSON)
    assert with_parameters.json["result"] == {"got": {"a": 1}}


def test_missing_and_unknown_methods(original):
    url = original().url
    assert exchange(url, json.dumps({"parameters": {"a": 1}}).encode(), JSON).json == {
        "error": {"code": 1002, "value": "Missing method."}
    }
    assert _call(url, "no_such.method", {}).json["error"] == {"code": 1001, "value": "Cannot call 'no_such.method'."}


def test_debug_answers_the_message_and_logs_the_traceback(original):
    server = original()
    assert _call(server.url, "fails", {}).json["error"] == {"code": 1000, "value": "the pump is out of water"}
    _wait_for(server, r"Traceback[\s\S]*ValueError: the pump is out of water", 1)
    quiet = original(debug=False)
    assert _call(quiet.url, "fails", {}).json["error"] == {"code": 1000, "value": "Server error (ValueError)"}


# -- the class-level handlers ----------------------------------------------------------------
def test_before_and_after_handlers_see_every_call(original):
    server = original()
    _call(server.url, "echo", {})
    before = _wait_for(server, r"hook before echo ([0-9a-f-]{36})", 1)
    after = _wait_for(server, r"hook after ([0-9a-f-]{36})", 1)
    assert before[0] == after[0]
    batch = {k: {"method": "task_echo", "parameters": {}} for k in "abc"}
    exchange(server.url, json.dumps({"batch": batch}).encode(), JSON)
    entries = _wait_for(server, r"hook before task_echo ([0-9a-f-]{36})", 3)
    assert len(set(entries)) == 3  # each entry of a batch is a transaction of its own
    finished = _wait_for(server, r"hook after ([0-9a-f-]{36})", 4)
    assert set(entries) <= set(finished)


def test_before_handler_rides_on_sockets(original):
    import asyncio

    server = original(use_web_sockets=True, http="tornado")

    async def call():
        async with await server.async_client().connect() as socket:
            return await socket.call("echo", {"n": 1})

    assert asyncio.run(call()) == {"got": {"n": 1}}
    before = _wait_for(server, r"hook before echo ([0-9a-f-]{36})", 1)
    assert before[0] in _wait_for(server, r"hook after ([0-9a-f-]{36})", 1)


# -- hmac_enabled=True: the 2016 per-session key beside the user id ----------------------
def _key_signed(url, method, parameters, session, key):
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    signature = base64.b64encode(hmac.new(key.encode(), b"POST/" + body, hashlib.sha1).digest()).decode()
    return exchange(url, body, {**JSON, "x-toto-session-id": session, "x-toto-hmac": signature})


def test_hmac_enabled_serves_the_session_key_and_the_user_id(original):
    url = original(hmac_enabled=True).url
    user = unique_user()
    created = _call(url, "account.create", {"user_id": user, "password": "pw of the test"}).json["result"]
    session, key = created["session_id"], created["key"]
    answer = _key_signed(url, "who", {}, session, key)
    assert answer.json["result"]["user_id"] == user
    expected = hmac.new(key.encode(), session.encode() + answer.body, hashlib.sha1).digest()
    assert answer.headers["x-toto-hmac"] == base64.b64encode(expected).decode()
    # The 2012 form (HMAC keyed with the user id over the body) is answered in kind.
    body = json.dumps({"method": "who", "parameters": {}}).encode()
    by_user = base64.b64encode(hmac.new(user.encode(), body, hashlib.sha1).digest()).decode()
    old = exchange(url, body, {**JSON, "x-toto-session-id": session, "x-toto-hmac": by_user})
    assert old.json["result"]["user_id"] == user
    assert (
        old.headers["x-toto-hmac"]
        == base64.b64encode(hmac.new(user.encode(), old.body, hashlib.sha1).digest()).decode()
    )
    assert _key_signed(url, "who", {}, session, "not the key").json["error"]["code"] == 1008
    login = _call(url, "account.login", {"user_id": user, "password": "pw of the test"}).json["result"]
    assert login["session_id"] != session and login["key"] != key
    assert _key_signed(url, "who", {}, login["session_id"], login["key"]).json["result"]["user_id"] == user


def test_current_user_and_error_info(original):
    url = original(hmac_enabled=False).url
    user = unique_user()
    session = _call(url, "account.create", {"user_id": user, "password": "pw"}).json["result"]["session_id"]
    result = _call(url, "who", {}, {"x-toto-session-id": session}).json["result"]
    assert result == {"user_id": user, "error_info": {"code": 1000, "value": "shown as 1000"}}


def test_unsigned_requests_are_the_deployments_choice_by_environment(original):
    """test_authentication's server runs with the original's defaults, which were unsigned
    (hmac_enabled=False); Toto's are signed. TOTO_HMAC_ENABLED=false is how that deployment
    says so, its code unchanged (the original's suite runs that way: docs/compat.md)."""
    user = unique_user()
    unsigned = original(env={"TOTO_HMAC_ENABLED": "false"}).url
    session = _call(unsigned, "account.create", {"user_id": user, "password": "pw"}).json["result"]["session_id"]
    assert _call(unsigned, "who", {}, {"x-toto-session-id": session}).json["result"]["user_id"] == user
    signed = original().url
    session = _call(signed, "account.create", {"user_id": user, "password": "pw"}).json["result"]["session_id"]
    refused = _call(signed, "who", {}, {"x-toto-session-id": session}).json["error"]
    assert refused["code"] == 1008


# -- sessions kept by the client -------------------------------------------------------------
def test_client_cache_sessions_over_the_wire(original):
    url = original(hmac_enabled=True, startup_function="startup.keep_sessions_on_the_client").url
    user = unique_user()
    created = _call(url, "account.create", {"user_id": user, "password": "pw"}).json["result"]
    assert len(created["session_id"]) > 22  # the session travels in its id
    assert _key_signed(url, "who", {}, created["session_id"], created["key"]).json["result"]["user_id"] == user
    forged = created["session_id"][:-4] + ("AAAA" if not created["session_id"].endswith("AAAA") else "BBBB")
    assert _key_signed(url, "who", {}, forged, created["key"]).json["error"]["code"] == 1007


def test_client_cache_round_trip_and_tampering():
    from toto.clientsessioncache import AESCipher, ClientCache
    from toto.exceptions import TotoException
    from toto.session import TotoSession

    cache = ClientCache(AESCipher("12345678901234561234567890123456" + "iv of 16 bytes!!"), "mac key")
    session = TotoSession(None, {"session_id": TotoSession.generate_id(), "expires": 5.0, "user_id": "ada"})
    session["n"] = 3
    data = session.session_data()
    stored = cache.store_session(data)
    assert stored != cache.store_session(data)  # a fresh nonce every time
    loaded = TotoSession(None, cache.load_session(stored))
    assert (loaded.session_id, loaded.user_id, loaded.expires, loaded["n"]) == (stored, "ada", 5.0, 3)
    raw = bytearray(base64.urlsafe_b64decode(stored))
    raw[20] ^= 1
    with pytest.raises(TotoException) as caught:
        cache.load_session(base64.urlsafe_b64encode(bytes(raw)).decode())
    assert caught.value.code == 1007


# -- toto.session ----------------------------------------------------------------------------
def test_session_class_api():
    from toto.session import SESSION_ID_LENGTH, TotoSession

    ids = {TotoSession.generate_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == SESSION_ID_LENGTH == 22 for i in ids)
    assert all(urllib.parse.quote_plus(i) == i for i in ids)
    session = TotoSession(None, {"session_id": "s" * 22, "expires": 10.5, "user_id": "bo"})
    session["f"] = 1.5
    copy = TotoSession(None, TotoSession.loads(TotoSession.dumps(session.session_data())))
    assert (copy.session_id, copy.user_id, copy.expires, copy["f"], copy["missing"]) == (
        "s" * 22,
        "bo",
        10.5,
        1.5,
        None,
    )
    copy.session_id = "t" * 22
    assert copy.session_id == "t" * 22


def test_set_serializer_allows_pickle_with_a_warning():
    from toto.session import TotoSession

    data = {"session_id": "x", "expires": 1.0, "user_id": "u"}
    try:
        with pytest.warns(UserWarning, match="loading pickle runs code"):
            TotoSession.set_serializer(pickle)
        pickled = TotoSession.dumps(data)
        assert isinstance(pickled, bytes) and TotoSession.loads(pickled) == data
        with pytest.raises(ValueError):
            TotoSession.set_serializer(sys)
    finally:
        TotoSession.set_serializer(json)
    assert TotoSession.dumps(data) == json.dumps(data)


# -- options the original's suite runs with ------------------------------------------------
def test_processes_minus_one_is_one_per_cpu():
    import os

    from toto.daemon import process_count
    from toto.server import TotoServer

    server = TotoServer(argv=["--processes=-1", "--database=memory", "--method_module=toto.methods"])
    assert process_count(server) == (os.cpu_count() or 1)


def test_database_json_without_a_file_is_memory(original, tmp_path):
    server = original(database="json", db_host="")
    assert _call(server.url, "echo", {"a": 1}).json["result"] == {"got": {"a": 1}}
    refused = subprocess.run(
        [sys.executable, "-m", "toto", "serve", "--database=json", f"--db_host={tmp_path / 'db.json'}"],
        capture_output=True,
        text=True,
        cwd=APP,
        timeout=60,
    )
    assert refused.returncode != 0 and "use database = 'sqlite'" in refused.stderr and "Traceback" not in refused.stderr


def _serve(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "toto", "serve", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_a_template_config_with_other_databases_and_retired_options_starts(tmp_path):
    from toto.testing.server import free_port

    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("")
    (tmp_path / "site.conf").write_text(
        "method_module = 'methods'\ndatabase = 'mongodb'\nmongodb_database = 'site'\n"
        "remote_instances = 'tcp://localhost:8787'\ndaemon = 'start'\npidfile = 'site.pid'\n"
    )
    port = str(free_port())
    started = _serve(tmp_path, "site.conf", "--database=memory", f"--port={port}")
    try:
        assert started.returncode == 0, started.stderr
        assert started.stderr.count("mongodb_database is for another database than memory: ignored") == 1
        assert started.stderr.count("option remote_instances of the original Toto is ignored") == 1
        assert "Traceback" not in started.stderr
        # daemon = 'start' in the file took effect: the server runs in the background.
        answer = exchange(f"http://127.0.0.1:{port}/", json.dumps({"method": "account.login"}).encode(), JSON)
        assert "error" in answer.json
    finally:
        stopped = _serve(tmp_path, "site.conf", "--database=memory", "--stop")
    assert stopped.returncode == 0, stopped.stderr
    (tmp_path / "typo.conf").write_text("method_module = 'methods'\nprot = 8888\n")
    typo = _serve(tmp_path, "typo.conf", "--database=memory", f"--port={port}")
    assert typo.returncode == 2 and "unknown option 'prot' (did you mean --port?)" in typo.stderr


def test_session_get_account_sets_saves_and_reads_fields(original):
    url = original(hmac_enabled=False).url
    user = unique_user()
    created = {"user_id": user, "password": "pw", "city": "Oslo"}
    session = _call(url, "account.create", created).json["result"]["session_id"]
    header = {"x-toto-session-id": session}
    assert _call(url, "profile", {"color": "teal"}, header).json["result"] == {"updated_fields": ["color"]}
    read = _call(url, "read_profile", {"names": ["color", "city", "password", "missing"]}, header).json["result"]
    assert read == {"color": "teal", "city": "Oslo", "password": None, "missing": None}


def test_set_hmac_handlers_replace_the_key_checks(original):
    url = original(hmac_enabled=True, startup_function="startup.custom_signatures").url
    user = unique_user()
    created = _call(url, "account.create", {"user_id": user, "password": "pw"}).json["result"]
    headers = {"x-toto-session-id": created["session_id"]}
    answer = _call(url, "who", {}, {**headers, "x-toto-hmac": "key:" + created["key"][:8]})
    assert answer.json["result"]["user_id"] == user and answer.headers["x-toto-hmac"] == "signed:" + user
    refused = _call(url, "who", {}, {**headers, "x-toto-hmac": "key:wrong"})
    assert refused.json["error"] == {"code": 1008, "value": "Invalid HMAC (custom)"}
