"""Hypothesis throws bodies, headers, content types, URL paths and batch shapes at a running
server (issue 13): every answer is in the protocol's shape, no 5xx but 503, and when the
module ends the server is alive, its log holds no traceback and its memory is bounded."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import bson
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toto.signing import user_id_hmac
from toto.testing.server import ServerProcess

from tests.fuzz.conftest import EXAMPLES, SENT
from tests.fuzz.wire import Wire, check_answer

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=EXAMPLES <= 500,  # the short run in the test suite is the same every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

#: Methods of the test app that take any parameters without failing themselves, and the built-ins.
METHODS = [
    "echo", "nothing", "optional", "whoami", "nonascii", "toto_error", "remote_ip", "anonymous",
    "counter.increment", "account.create", "account.login", "account.logout", "account.update",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/msgpack",
    "application/x-msgpack", "application/bson", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b0undary", "multipart/form-data", "text/plain", "", ";;;", "application/xml",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
method_names = st.sampled_from(METHODS) | st.text(max_size=30) | values
calls = st.fixed_dictionaries(
    {},
    optional={
        "method": method_names,
        "parameters": values
        | st.fixed_dictionaries({"user_id": st.text(max_size=20), "password": st.text(max_size=20)}),
    },
)
requests_ = calls | st.fixed_dictionaries({"batch": st.dictionaries(st.text(max_size=8), calls | values, max_size=6)})
header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60
)
path_segment = st.text(max_size=12) | st.sampled_from(["echo", "account", "login", "..", "%2e%2e", "%ff", "%", "_x"])
paths = st.lists(path_segment, max_size=4).map(lambda parts: "/" + "/".join(parts))


def _plain(value: Any) -> Any:
    """``value`` with what a format cannot hold replaced (BSON: string keys, 64-bit ints)."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def encode(request: Any, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(request, allow_nan=True).encode()
    if fmt == "json-ascii-safe":
        return json.dumps(request, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if fmt == "msgpack":
        return msgpack.packb(_plain(request), use_bin_type=True)
    doc = _plain(request)
    return bson.encode(doc if isinstance(doc, dict) else {"value": doc})


def _url_target(path: str) -> str:
    # http.client refuses control characters and spaces in the target; send them escaped.
    return "".join(
        c if 33 <= ord(c) < 127 else "%" + "%".join(f"{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in path
    )


@pytest.fixture(scope="module")
def wire(fuzzed: ServerProcess) -> Iterator[Wire]:
    w = Wire(fuzzed.port, SENT)
    yield w
    w.close()


@pytest.fixture(scope="module")
def signed_in(fuzzed: ServerProcess) -> dict[str, str]:
    """A real session, so some inputs reach the authenticated paths."""
    client = fuzzed.client()
    client.create("fuzz-user", "fuzz password")
    assert client.session is not None
    return {"session_id": client.session["session_id"], "user_id": "fuzz-user"}


@FUZZ
@given(
    request=requests_,
    fmt=st.sampled_from(["json", "json-ascii-safe", "msgpack", "bson"]),
    content_type=st.sampled_from(CONTENT_TYPES) | st.none(),
    path=st.sampled_from(["/", "/echo", "/account/login"]) | paths,
    session=st.sampled_from(["none", "valid", "unsigned", "bogus"]),
    accept=st.sampled_from([None, "*/*", "application/json", "application/msgpack", "application/bson;q=0.5, */*"]),
)
def test_requests_of_every_shape_and_format(wire, signed_in, request, fmt, content_type, path, session, accept):
    body = encode(request, fmt)
    if content_type is None:
        content_type = {"msgpack": "application/msgpack", "bson": "application/bson"}.get(fmt, "application/json")
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    if session != "none":
        headers["x-toto-session-id"] = signed_in["session_id"] if session != "bogus" else "A" * 22
        if session == "valid":
            headers["x-toto-hmac"] = user_id_hmac(signed_in["user_id"], body)
    status, answer_headers, data = wire.send("POST", _url_target(path), headers, body)
    check_answer(status, answer_headers, data, "POST")


@FUZZ
@given(
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(CONTENT_TYPES) | header_values,
    verb=st.sampled_from(["POST", "GET", "HEAD", "OPTIONS", "PUT", "DELETE"]),
    path=paths,
    query=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4),
    headers=st.dictionaries(header_names, header_values, max_size=6),
)
def test_random_bytes_headers_and_paths(wire, body, content_type, verb, path, query, headers):
    target = _url_target(path)
    if query:
        target += "?" + "&".join(f"{_url_target(k)}={_url_target(v)}" for k, v in query)
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding", "host")}
    headers["Content-Type"] = content_type
    status, answer_headers, data = wire.send(verb, target, headers, body if verb not in ("GET", "HEAD") else b"")
    check_answer(status, answer_headers, data, verb)


fields = st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=40)), max_size=8)


@FUZZ
@given(
    parts=fields,
    boundary=st.sampled_from([b"b0undary", b"x", b""]) | st.binary(min_size=1, max_size=10),
    broken=st.sampled_from(["none", "no-end", "no-disposition", "truncated", "garbage"]),
    urlencoded=st.binary(max_size=300),
    multipart=st.booleans(),
)
def test_forms(wire, parts, boundary, broken, urlencoded, multipart):
    if multipart:
        b = boundary or b"b0undary"
        chunks = []
        for name, value in parts:
            disposition = (
                b"" if broken == "no-disposition" else b'Content-Disposition: form-data; name="' + name + b'"\r\n'
            )
            chunks.append(b"--" + b + b"\r\n" + disposition + b"\r\n" + value + b"\r\n")
        body = b"".join(chunks) + (b"" if broken == "no-end" else b"--" + b + b"--\r\n")
        if broken == "truncated":
            body = body[: len(body) // 2]
        elif broken == "garbage":
            body = urlencoded + body
        content_type = "multipart/form-data; boundary=" + boundary.decode("latin-1").replace("\r", "").replace("\n", "")
    else:
        body = urlencoded
        content_type = "application/x-www-form-urlencoded"
    status, answer_headers, data = wire.send("POST", "/echo", {"Content-Type": content_type}, body)
    check_answer(status, answer_headers, data, "POST")


@FUZZ
@given(
    verb=st.binary(max_size=10),
    target=st.binary(max_size=200),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"HTTP/1.1 extra"]),
    lines=st.lists(st.binary(max_size=80), max_size=8),
    body=st.binary(max_size=200),
)
def test_raw_heads(wire, verb, target, version, lines, body):
    answer = wire.send_raw(verb + b" " + target + b" " + version + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + body)
    if answer:  # a close without a word is Tornado's answer to a head it cannot parse
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
        assert int(status_line.split(b" ")[1]) in {200, 204, 400, 404, 405, 413, 414, 415, 431, 503}, answer[:300]


def test_floats_json_cannot_carry_are_refused_not_echoed(wire):
    for token in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"method": "echo", "parameters": {{"x": {token}}}}}'.encode()
        status, headers, data = wire.send("POST", "/", {"Content-Type": "application/json"}, body)
        assert status == 400 and json.loads(data)["error"]["code"] == 1011
    # Nor over msgpack or BSON (SECURITY.md): a client of another format gets what a JSON client gets.
    for number in (math.nan, math.inf, -math.inf):
        for content_type, body in (
            ("application/msgpack", msgpack.packb({"method": "echo", "parameters": {"x": number}})),
            ("application/bson", bson.encode({"method": "echo", "parameters": {"x": number}})),
        ):
            status, headers, data = wire.send(
                "POST", "/", {"Content-Type": content_type, "Accept": "application/json"}, body
            )
            check_answer(status, headers, data, "POST")
            assert status == 400 and json.loads(data)["error"]["code"] == 1011, (content_type, number, data)
