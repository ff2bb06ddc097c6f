"""PROTOCOL.md sections 1, 2, 6 and 7 over HTTP against a running server."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
from toto.client import TotoClient, TotoClientError


def post(client: TotoClient, payload: object, path: str = "/", **kw: object) -> tuple[int, dict, dict]:
    status, headers, body = client.request(json.dumps(payload).encode(), path, sign=False, **kw)  # type: ignore[arg-type]
    return status, dict(headers), json.loads(body) if body else {}


# -- ways of calling ----------------------------------------------------------------------
def test_body_call(server):
    c = server.client()
    status, _, answer = post(c, {"method": "echo", "parameters": {"a": [1, "x"]}})
    assert status == 200 and answer == {"result": {"a": [1, "x"]}}


def test_url_call(server):
    status, _, answer = post(server.client(), {"parameters": {"b": 2}}, path="/echo")
    assert answer == {"result": {"b": 2}}


def test_nested_url_call(server):
    c = server.client()
    c.create("nested-url-user", "pw")
    status, _, body = c.request(json.dumps({"parameters": {"k": "v"}}).encode(), "/state/set")
    assert json.loads(body)["result"] == ["k"]
    assert c.call("state.get") == {"k": "v"}


def test_body_without_parameters_is_the_parameters(server):
    _, _, answer = post(server.client(), {"method": "echo"})
    assert answer == {"result": {"method": "echo"}}


def test_get_call_single_and_repeated_arguments(server):
    status, headers, body = server.client().request(b"", "/echo?x=1&x=2&y=%C3%A9", method="GET", sign=False)
    assert status == 200
    assert json.loads(body) == {"result": {"x": ["1", "2"], "y": "é"}}


def test_head_answers_like_get_without_body(server):
    c = server.client()
    _, get_headers, get_body = c.request(b"", "/echo?x=1", method="GET", sign=False)
    status, headers, body = c.request(b"", "/echo?x=1", method="HEAD", sign=False)
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(get_body))
    assert headers["Content-Type"] == get_headers["Content-Type"]


def test_form_call(server):
    status, _, body = server.client().request(
        b"a=1&b=two&b=three", "/echo", content_type="application/x-www-form-urlencoded", sign=False
    )
    assert json.loads(body) == {"result": {"a": ["1"], "b": ["two", "three"]}}


def test_multipart_call_with_file(server):
    boundary = "xYzBoundary"
    parts = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n"
    ).encode()
    status, _, body = server.client().request(
        parts, "/upload_info", content_type=f"multipart/form-data; boundary={boundary}", sign=False
    )
    assert status == 200
    assert json.loads(body) == {
        "result": {"title": "hello", "upload": {"filename": "a.txt", "content_type": "text/plain", "text": "file body"}}
    }


def test_batch_mixes_results_and_errors(server):
    c = server.client()
    status, _, answer = post(
        c,
        {
            "batch": {
                "one": {"method": "echo", "parameters": {"n": 1}},
                "two": {"method": "fail"},
                "three": {"method": "no.such.method"},
                "four": {"method": "required", "parameters": {"a": 1}},
                "five": {"method": "later", "parameters": {"value": 5}},
            }
        },
    )
    assert status == 200
    batch = answer["batch"]
    assert batch["one"] == {"result": {"n": 1}}
    assert batch["two"]["error"]["code"] == 1000
    assert batch["three"]["error"] == {"code": 1001, "value": "Cannot call 'no.such.method'."}
    assert batch["four"]["error"]["code"] == 1003 and "b" in batch["four"]["error"]["value"]
    assert batch["five"] == {"result": {"later": 5}}


def test_batch_entries_run_concurrently(server):
    # The waiting entry can only be answered if the sending entry runs while it waits.
    name = "batch-concurrency"
    _, _, answer = post(
        server.client(),
        {
            "batch": {
                "wait": {"method": "events.wait", "parameters": {"name": name, "timeout": 10}},
                "send": {"method": "events.send", "parameters": {"name": name, "args": {"v": 1}}},
            }
        },
    )
    assert answer["batch"]["wait"] == {"result": {"event": name, "args": {"v": 1}}}


def test_batch_through_client(server):
    answers = server.client().batch({"a": ("echo", {"x": 1}), "b": ("fail", None)})
    assert answers["a"] == {"x": 1}
    assert isinstance(answers["b"], TotoClientError) and answers["b"].code == 1000


@pytest.mark.parametrize("select,body_ok,url_ok", [("url", False, True), ("parameter", True, False)])
def test_method_select(start_server, select, body_ok, url_ok):
    c = start_server(method_select=select).client()
    _, _, by_body = post(c, {"method": "echo", "parameters": {"v": 1}})
    _, _, by_url = post(c, {"parameters": {"v": 1}}, path="/echo")
    assert ("result" in by_body) is body_ok
    assert ("result" in by_url) is url_ok
    if not body_ok:
        assert by_body["error"]["code"] == 1002
    if not url_ok:
        assert by_url["error"]["code"] == 1002


def test_root_mount(start_server):
    srv = start_server(root="/api/v1")
    c = TotoClient(srv.url + "/api/v1")
    assert c.call("echo", {"r": 1}) == {"r": 1}
    status, _, body = c.request(b"", "/echo?q=2", method="GET", sign=False)
    assert json.loads(body) == {"result": {"q": "2"}}
    outside = srv.client().request(b"{}", "/echo", sign=False)
    assert outside[0] == 404


def test_remote_ip_trusts_proxy_headers_only_with_xheaders(start_server):
    headers = {"X-Real-Ip": "203.0.113.7"}
    plain = start_server()
    status, _, body = plain.client().request(b"", "/remote_ip", method="GET", headers=headers, sign=False)
    assert json.loads(body) == {"result": {"remote_ip": "127.0.0.1"}}
    proxied = start_server(xheaders=True)
    status, _, body = proxied.client().request(b"", "/remote_ip", method="GET", headers=headers, sign=False)
    assert json.loads(body) == {"result": {"remote_ip": "203.0.113.7"}}


def test_methods_read_request_headers_as_tornados_httpheaders(server):
    """``handler.request.headers`` answers alike on every transport: lookups in any case,
    a header sent twice joined by a comma (``get_list``: each line), names in Http-Header-Case."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    names = ["x-toto-custom", "X-TWICE", "X-Not-Sent", "content-type"]
    body = json.dumps({"method": "request_headers", "parameters": {"names": names}})
    connection.putrequest("POST", "/")
    for name, value in [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Toto-Custom", "one value"),
        ("x-twice", "first"),
        ("X-Twice", "second"),
    ]:
        connection.putheader(name, value)
    connection.endheaders(body.encode())
    answer = connection.getresponse()
    assert answer.status == 200
    result = json.loads(answer.read())["result"]
    connection.close()
    assert result == {
        "get": {
            "x-toto-custom": "one value",
            "X-TWICE": "first,second",
            "X-Not-Sent": None,
            "content-type": "application/json",
        },
        "item": {"x-toto-custom": "one value", "X-TWICE": "first,second", "content-type": "application/json"},
        "in": {"x-toto-custom": True, "X-TWICE": True, "X-Not-Sent": False, "content-type": True},
        "list": {
            "x-toto-custom": ["one value"],
            "X-TWICE": ["first", "second"],
            "X-Not-Sent": [],
            "content-type": ["application/json"],
        },
        "all": [["X-Toto-Custom", "one value"], ["X-Twice", "first"], ["X-Twice", "second"]],
        "keys": ["X-Toto-Custom", "X-Twice"],
        "copy_is_apart": True,
        "default": "none",
    }


# -- kinds of methods -----------------------------------------------------------------------
def test_async_def_method(server):
    assert server.client().call("sleep", {"seconds": 0.01}) == {"slept": 0.01}


def test_callback_style_method(server):
    assert server.client().call("later", {"value": "x"}) == {"later": "x"}


def test_callback_style_error(server):
    with pytest.raises(TotoClientError) as err:
        server.client().call("later_error")
    assert (err.value.code, err.value.value) == (4000, "later failure")


def test_raw_response(server):
    status, headers, body = server.client().request(b'{"method": "raw"}', sign=False)
    assert (status, body, headers["Content-Type"]) == (200, b"plain text answer", "text/plain")


def test_method_returning_none_answers_empty_envelope(server):
    _, _, answer = post(server.client(), {"method": "nothing"})
    assert answer == {}


def test_custom_error_value(server):
    with pytest.raises(TotoClientError) as err:
        server.client().call("toto_error", {"q": 1})
    assert err.value.code == 4242 and err.value.value == {"reason": "custom", "echo": {"q": 1}}


def test_requires_names_missing(server):
    with pytest.raises(TotoClientError) as err:
        server.client().call("required", {"a": 1})
    assert err.value.code == 1003 and err.value.value == "Missing parameters: b"
    assert server.client().call("required", {"a": 1, "b": 2}) == 3


def test_on_connection_close_is_called(server):
    c = server.client()
    before = c.call("hold_closed")
    s = socket.create_connection(("127.0.0.1", server.port))
    body = b'{"method": "hold"}'
    s.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(100)  # the method never answers
    s.close()
    for _ in range(50):
        if c.call("hold_closed") == before + 1:
            break
        threading.Event().wait(0.05)
    assert c.call("hold_closed") == before + 1


def test_json_answers_are_ascii_only(server):
    _, _, body = server.client().request(b'{"method": "nonascii"}', sign=False)
    body.decode("ascii")
    assert json.loads(body) == {"result": {"text": "héllo ✓ 漢字 🎉"}}
    assert b"\\u00e9" in body


def test_unserializable_result_is_1000(server):
    _, _, answer = post(server.client(), {"method": "unserializable"})
    assert answer["error"]["code"] == 1000


# -- CORS -------------------------------------------------------------------------------------
def test_every_answer_carries_cors_headers(server):
    c = server.client()
    for path, body in (("/", b'{"method":"echo"}'), ("/", b"not json"), ("/", b'{"method":"fail"}')):
        _, headers, _ = c.request(body, path, sign=False)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "x-toto-hmac" in headers["Access-Control-Expose-Headers"]


def test_preflight(server):
    status, headers, body = server.client().request(
        b"",
        "/",
        method="OPTIONS",
        sign=False,
        headers={
            "Origin": "http://other.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-toto-hmac, x-toto-session-id, content-type, x-custom",
        },
    )
    assert status in (200, 204)
    allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-toto-hmac", "x-toto-session-id", "content-type", "origin", "x-custom"} <= allowed
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} == {"POST", "GET", "HEAD", "OPTIONS"}
    assert headers["Access-Control-Allow-Origin"] == "*"


def test_allow_origin_option(start_server):
    srv = start_server(allow_origin="https://app.example")
    _, headers, _ = srv.client().request(b'{"method":"echo"}', sign=False)
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_off_mode_keeps_compat_cors_headers(start_server):
    srv = start_server(hmac_mode="off")
    c = srv.client()
    for body in (b'{"method":"echo"}', b"not json"):
        _, headers, _ = c.request(body, sign=False)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Expose-Headers"] == "x-toto-hmac"


def test_session_key_mode_exposes_timestamp(start_server):
    srv = start_server(hmac_mode="session_key")
    _, headers, _ = srv.client().request(b'{"method":"echo"}', sign=False)
    assert set(h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")) == {
        "x-toto-hmac",
        "x-toto-timestamp",
    }
