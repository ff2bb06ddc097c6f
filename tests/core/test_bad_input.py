"""Bad input gets a clear answer in the protocol's shape: never a traceback, a hang or a crash."""

from __future__ import annotations

import json
import socket
import time

import pytest
from toto.client import TotoClientError


def answer(server, body: bytes, **kw):
    status, headers, data = server.client().request(body, sign=False, **kw)
    return status, json.loads(data)


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"method": "echo"', b"\xff\xfe\x00", b"[1, 2, 3]", b'"text"', b"42", b"null"]
)
def test_malformed_or_non_object_body_is_400_1011(server, body):
    status, data = answer(server, body)
    assert status == 400 and data["error"]["code"] == 1011


def test_bad_batch_shapes(server):
    status, data = answer(server, json.dumps({"batch": [1, 2]}).encode())
    assert status == 400 and data["error"]["code"] == 1011
    status, data = answer(server, json.dumps({"batch": {"a": "echo"}}).encode())
    assert status == 200 and data["batch"]["a"]["error"]["code"] == 1011
    too_many = {"batch": {str(i): {"method": "echo"} for i in range(101)}}
    status, data = answer(server, json.dumps(too_many).encode())
    assert status == 400 and data["error"]["code"] == 1011


def test_deeply_nested_json_is_400_and_the_server_survives(server):
    # Far deeper than any decoder goes, and still fewer values than max_body_values (more is 413).
    depth = 50_000
    status, data = answer(server, b"[" * depth + b"]" * depth)
    assert status == 400 and data["error"]["code"] == 1011
    nested_in_params = b'{"method": "echo", "parameters": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    status, data = answer(server, nested_in_params)
    assert status == 400 and data["error"]["code"] == 1011
    assert server.client().call("echo", {"alive": True}) == {"alive": True}


def test_unknown_content_type_is_415_naming_the_plugin(start_server):
    srv = start_server(env={"TOTO_PLUGINS": ""})  # only the built-ins: no msgpack, no bson
    status, data = answer(srv, b"\x81\xa6method\xa4echo", content_type="application/msgpack")
    assert status == 415 and data["error"]["code"] == 1012
    assert "pip install" in data["error"]["value"] and "toto-msgpack" in data["error"]["value"]
    status, data = answer(srv, b"<xml/>", content_type="application/xml")
    assert status == 415 and data["error"]["code"] == 1012


def _raw_exchange(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
        return data
    finally:
        s.close()


def test_declared_oversize_body_is_413_without_reading_it(start_server):
    srv = start_server(max_body_size=1024)
    # Declares 1 GiB but sends only a little: the server must answer and close, not wait for it.
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
    data = _raw_exchange(srv.port, head, [b"{" * 100])
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == 1011 and "max_body_size" in body["error"]["value"]
    assert srv.client().call("echo", {"ok": 1}) == {"ok": 1}


def test_chunked_oversize_body_is_413(start_server):
    srv = start_server(max_body_size=1024)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    data = _raw_exchange(srv.port, head, [chunk, chunk, chunk])
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


def test_body_at_the_limit_is_accepted(start_server):
    srv = start_server(max_body_size=1024)
    body = json.dumps({"method": "echo", "parameters": {"p": "x" * 900}}).encode()
    assert len(body) <= 1024
    status, data = answer(srv, body)
    assert status == 200 and data["result"]["p"] == "x" * 900


@pytest.mark.parametrize(
    "name",
    [
        "__init__",
        "os.system",
        "..x",
        "/etc/passwd",
        "echo.os",
        "with_os.os",
        "with_os.os.system",
        "helpers",
        "methods",
        "_private",
        "echo/../fail",
        "sys",
        "toto.server",
        "a..b",
        "echo.",
        ".echo",
        "1abc",
        "é",
    ],
)
def test_method_names_that_reach_outside_are_1001(server, name):
    status, data = answer(server, json.dumps({"method": name}).encode())
    assert status == 200 and data["error"]["code"] == 1001


def test_a_method_module_without_invoke_is_1001_and_the_log_says_why_once(start_server):
    srv = start_server()
    for _ in range(3):
        status, data = answer(srv, json.dumps({"method": "helpers"}).encode())
        assert status == 200 and data["error"]["code"] == 1001
    deadline = time.monotonic() + 10
    while "defines no invoke" not in srv.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in srv.output().splitlines() if "defines no invoke" in line]
    assert len(lines) == 1, srv.output()
    assert "methods.helpers" in lines[0] and "helpers.py" in lines[0] and "1001" in lines[0]


@pytest.mark.parametrize("path", ["/__init__", "/os/system", "/..%2Fx", "/etc/passwd", "/with_os/os"])
def test_url_names_that_reach_outside_are_1001(server, path):
    status, headers, data = server.client().request(b"{}", path, sign=False)
    assert json.loads(data)["error"]["code"] == 1001


def test_non_string_method_is_1001(server):
    status, data = answer(server, json.dumps({"method": ["echo"]}).encode())
    assert data["error"]["code"] == 1001


def test_missing_method_is_1002(server):
    status, data = answer(server, json.dumps({"parameters": {}}).encode())
    assert data["error"] == {"code": 1002, "value": "Missing method."}


def test_unknown_session_is_1007(server):
    for sid in ("A" * 22, "short", "x" * 500, "bad chars !!"):
        c = server.client()
        c.session = {"session_id": sid, "user_id": "nobody"}
        with pytest.raises(TotoClientError) as err:
            c.call("whoami")
        assert err.value.code == 1007


def test_exception_is_1000_without_traceback(server):
    status, data = answer(server, json.dumps({"method": "fail"}).encode())
    assert status == 200 and data["error"]["code"] == 1000
    text = json.dumps(data)
    assert "Traceback" not in text and "secret internal detail" not in text


def test_debug_mode_answers_the_message(start_server):
    srv = start_server(debug=True)
    status, data = answer(srv, json.dumps({"method": "fail"}).encode())
    assert data["error"] == {"code": 1000, "value": "secret internal detail"}


def test_unsupported_http_method_answers_in_protocol_shape(server):
    status, headers, data = server.client().request(b"{}", "/echo", method="PUT", sign=False)
    assert status == 405 and json.loads(data)["error"]["code"] == 1017


def test_invalid_utf8_path_is_1011(server):
    status, _, data = server.client().request(b"", "/ech%ff", method="GET", sign=False)
    assert status == 400 and json.loads(data)["error"]["code"] == 1011


def test_invalid_utf8_query_is_1011(server):
    status, _, data = server.client().request(b"", "/echo?x=%ff", method="GET", sign=False)
    assert json.loads(data)["error"]["code"] == 1011
