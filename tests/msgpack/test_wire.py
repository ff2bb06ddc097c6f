"""msgpack on the wire, over HTTP with the project's client: round trips that keep bytes as
bytes, content negotiation both ways through Accept, batches, and signatures over the exact
msgpack bytes in both signing modes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import subprocess
import sys

import msgpack
import pytest
from toto.client import AsyncTotoClient, TotoClient, TotoClientError, find_serializer, installed_serializers
from toto.signing import decode_session_key, user_id_hmac
from toto_msgpack import MsgpackSerializer

from tests.msgpack.conftest import EXT_APP, pack, post, unpack, user
from tests.websocket.conftest import raw_socket, run

VALUES = {
    "bytes": b"\x00\xff\x80binary\n",
    "empty_bytes": b"",
    "text": "Zoë ☃ 𝄞",
    "int": -(2**63),
    "big": 2**64 - 1,
    "float": 1.5,
    "none": None,
    "flags": [True, False],
    "nested": {"list": [1, "two", b"3", {"four": [4.0]}], "empty": {}},
}


@pytest.mark.parametrize("serializer", ["msgpack", "application/msgpack", "application/x-msgpack"])
def test_msgpack_round_trip_keeps_bytes_bytes(server, serializer: str) -> None:
    client = server.client(serializer=serializer)
    assert client.call("echo", VALUES) == VALUES
    answer = client.call("echo", {"b": b"\x01\x02"})
    assert type(answer["b"]) is bytes


def test_the_answer_uses_the_content_type_the_request_named(server) -> None:
    client = server.client()
    body = pack({"method": "echo", "parameters": {"x": b"y"}})
    for kind in ("application/msgpack", "application/x-msgpack", "application/msgpack; charset=binary"):
        status, answered, data = post(client, body, content_type=kind, Accept="*/*")
        assert status == 200 and data == {"result": {"x": b"y"}}
        assert answered == kind.split(";")[0]


def test_method_from_the_url_and_parameters_only_body(server) -> None:
    client = server.client(serializer="msgpack")
    status, _, data = client.request(pack({"parameters": {"k": b"v"}}), path="/echo")[0:3]
    assert status == 200 and unpack(data) == {"result": {"k": b"v"}}
    status, _, data = client.request(pack({"method": "echo"}))
    assert status == 200 and unpack(data) == {"result": {"method": "echo"}}, "no parameters key: the body is"


def test_msgpack_request_answered_in_json_when_accept_asks(server) -> None:
    client = server.client(serializer="msgpack", accept="application/json")
    assert client.call("echo", {"a": [1, "two"]}) == {"a": [1, "two"]}
    status, headers, data = client.request(pack({"method": "echo", "parameters": {"n": 1}}))
    assert headers["Content-Type"] == "application/json" and json.loads(data) == {"result": {"n": 1}}


def test_json_request_answered_in_msgpack_when_accept_asks(server) -> None:
    client = server.client(serializer="json", accept="application/msgpack")
    body = json.dumps({"method": "echo", "parameters": {"a": "b"}}).encode()
    status, headers, data = client.request(body)
    assert status == 200 and headers["Content-Type"] == "application/msgpack"
    assert unpack(data) == {"result": {"a": "b"}}
    assert client.call("echo", {"z": [1]}) == {"z": [1]}


def test_get_answers_msgpack_when_accept_asks(server) -> None:
    client = server.client(serializer="json", accept="application/x-msgpack")
    status, headers, data = client.request(path="/echo?x=1&x=2&y=3", method="GET")
    assert headers["Content-Type"] == "application/x-msgpack"
    assert unpack(data) == {"result": {"x": ["1", "2"], "y": "3"}}
    assert client.get("echo", y="4") == {"y": "4"}


@pytest.mark.parametrize(
    ("request_type", "accept", "answered"),
    [
        ("application/json", "application/json;q=0.5, application/msgpack", "application/msgpack"),
        ("application/json", "application/msgpack;q=0.4, application/json;q=0.9", "application/json"),
        ("application/msgpack", "application/msgpack;q=0, application/json", "application/json"),
        ("application/msgpack", "application/json, application/msgpack", "application/msgpack"),
        ("application/json", "application/json, application/msgpack", "application/json"),
        ("application/msgpack", "*/*", "application/msgpack"),
        ("application/msgpack", "text/html, application/xhtml+xml;q=0.9, */*;q=0.8", "application/msgpack"),
        ("application/json", "application/msgpack;q=bogus, application/json;q=0.1", "application/json"),
        ("application/json", "Application/MsgPack", "application/msgpack"),
        ("application/x-msgpack", "application/msgpack", "application/msgpack"),
    ],
)
def test_accept_quality_values_pick_the_answer_type(server, request_type: str, accept: str, answered: str) -> None:
    client = server.client()
    parameters = {"q": "x"}
    call = {"method": "echo", "parameters": parameters}
    body = json.dumps(call).encode() if request_type == "application/json" else pack(call)
    status, kind, data = post(client, body, content_type=request_type, Accept=accept)
    assert status == 200 and kind == answered and data == {"result": parameters}


def test_batches_in_msgpack(server) -> None:
    client = server.client(serializer="msgpack")
    answers = client.batch(
        {
            "a": ("echo", {"b": b"\x00"}),
            "b": ("toto_error", None),
            "c": ("no.such.method", None),
            "d": ("echo", None),
        }
    )
    assert answers["a"] == {"b": b"\x00"}
    assert isinstance(answers["b"], TotoClientError)
    assert isinstance(answers["c"], TotoClientError) and answers["c"].code == 1001
    assert answers["d"] == {}
    # A batch in msgpack answered in JSON, as Accept asks; bytes keys of the batch stay usable.
    status, kind, data = post(
        client, pack({"batch": {"one": {"method": "echo", "parameters": {"n": 1}}}}), Accept="application/json"
    )
    assert status == 200 and kind == "application/json" and data["batch"] == {"one": {"result": {"n": 1}}}


def test_user_id_signature_covers_the_msgpack_bytes(server) -> None:
    name = user()
    client = server.client(serializer="msgpack")
    created = client.create(name, "pw")
    assert created["user_id"] == name
    assert client.call("whoami") == {"user_id": name}
    body = pack({"method": "echo", "parameters": {"b": b"\xff"}})
    status, headers, data = client.request(body)
    assert status == 200 and headers["Content-Type"] == "application/msgpack"
    assert headers["x-toto-hmac"] == user_id_hmac(name, data), "the HMAC is over the exact msgpack bytes"
    assert unpack(data)["session"]["user_id"] == name

    # The request HMAC covers the msgpack body: the same signature on other bytes is refused
    # (by a method that asks for the session: a public one runs without it).
    signature = user_id_hmac(name, pack({"method": "whoami", "parameters": {"b": b"\xff"}}))
    tampered = pack({"method": "whoami", "parameters": {"b": b"\xfe"}})
    status, kind, answer = post(
        client,
        tampered,
        **{"x-toto-session-id": client.session["session_id"], "x-toto-hmac": signature},
    )
    assert status == 200 and answer["error"]["code"] == 1008


def test_session_key_signature_covers_the_msgpack_bytes(start_server) -> None:
    srv = start_server(database="memory", hmac_mode="session_key")
    client = srv.client(serializer="msgpack", hmac_mode="session_key")
    created = client.create(user(), "pw")
    key = decode_session_key(created["key"])
    assert client.call("echo", {"b": b"\x00\x01"}) == {"b": b"\x00\x01"}
    status, headers, data = client.request(pack({"method": "echo", "parameters": {"k": b"v"}}))
    stamp = headers["x-toto-timestamp"]
    expected = base64.b64encode(hmac.new(key, stamp.encode() + b"\n" + data, hashlib.sha256).digest()).decode()
    assert headers["x-toto-hmac"] == expected
    assert client.batch({"x": ("echo", {"v": b"1"})}) == {"x": {"v": b"1"}}


def test_client_refuses_a_msgpack_answer_whose_signature_does_not_match(server) -> None:
    client = server.client(serializer="msgpack")
    client.create(user(), "pw")
    status, headers, data = client.request(pack({"method": "echo", "parameters": {"x": 1}}))
    forged = pack({**unpack(data), "result": {"x": 2}})
    with pytest.raises(TotoClientError) as refused:
        client._decode(status, headers, forged)
    assert refused.value.code == 1009


def test_async_client_speaks_msgpack(server) -> None:
    async def run() -> None:
        client = AsyncTotoClient(server.url, serializer="msgpack")
        await client.create(user(), "pw")
        assert await client.call("echo", {"b": b"\x00"}) == {"b": b"\x00"}
        assert await client.batch({"a": ("echo", {"x": b"y"})}) == {"a": {"x": b"y"}}
        assert await client.get("echo", q="1") == {"q": "1"}
        assert await client.call("counter.increment") == 1

    asyncio.run(run())


def test_client_serializer_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_serializer("msgpack").content_types == ("application/msgpack", "application/x-msgpack")
    assert find_serializer("application/x-msgpack") is find_serializer("msgpack")
    assert find_serializer("JSON").name == "json"
    own = MsgpackSerializer(timestamps=True)
    assert TotoClient("http://127.0.0.1:1", serializer=own).serializer is own
    monkeypatch.setenv("TOTO_PLUGINS", "msgpack")  # as if toto-mongo were not installed
    installed_serializers.cache_clear()
    try:
        with pytest.raises(ValueError, match="toto-mongo"):
            TotoClient("http://127.0.0.1:1", serializer="application/bson")
    finally:
        monkeypatch.delenv("TOTO_PLUGINS")
        installed_serializers.cache_clear()
    with pytest.raises(ValueError, match="not installed"):
        TotoClient("http://127.0.0.1:1", serializer="yaml")


def test_values_msgpack_cannot_carry_are_1000_not_a_traceback(server) -> None:
    client = server.client(serializer="msgpack")
    with pytest.raises(TotoClientError) as failed:
        client.call("unserializable")
    assert failed.value.code == 1000 and "Traceback" not in str(failed.value.value)
    # bytes have no JSON form: asking for JSON answers 1000 rather than a broken body.
    to_json = server.client(serializer="msgpack", accept="application/json")
    with pytest.raises(TotoClientError) as no_json:
        to_json.call("echo", {"b": b"\x00"})
    assert no_json.value.code == 1000
    assert client.call("echo", {"still": "serving"}) == {"still": "serving"}


def test_raw_answers_are_untouched(server) -> None:
    client = server.client(serializer="msgpack")
    status, headers, data = client.request(pack({"method": "raw"}))
    assert status == 200 and headers["Content-Type"].startswith("text/plain") and data == b"plain text answer"


def test_json_clients_are_unchanged_with_the_plugin_installed(server) -> None:
    client = server.client()
    status, headers, data = client.request(json.dumps({"method": "nonascii"}).encode())
    assert headers["Content-Type"] == "application/json" and data.isascii()
    assert msgpack.version >= (1, 0, 4)


def test_toto_call_speaks_msgpack_and_prints_bytes(start_server) -> None:
    srv = start_server(cwd=EXT_APP, database="memory")
    done = subprocess.run(
        [sys.executable, "-m", "toto", "call", srv.url, "blob", '{"size": 3}', "--serializer=application/msgpack"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"blob": repr(b"\x00\x01\x02")}
    unknown = subprocess.run(
        [sys.executable, "-m", "toto", "call", srv.url, "blob", "--serializer=yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2, "a serializer that is not installed is a bad command line"
    assert "not installed" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


def test_the_plugin_shows_in_toto_plugins_and_serve_help() -> None:
    listed = subprocess.run([sys.executable, "-m", "toto", "plugins"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert "toto-msgpack" in listed.stdout and "application/x-msgpack" in listed.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "toto", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--msgpack_timestamps" in shown.stdout


def test_uploaded_files_come_back_as_bytes_when_accept_asks_for_msgpack(server) -> None:
    client = server.client(serializer="json", accept="application/msgpack")
    payload = bytes(range(256))
    boundary = "toto-boundary-7"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="all.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, headers, data = client.request(body, path="/echo", content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200 and headers["Content-Type"] == "application/msgpack"
    result = unpack(data)["result"]
    assert result["arguments"] == {"note": ["hi"]}
    assert result["files"] == {
        "file": [{"filename": "all.bin", "body": payload, "content_type": "application/octet-stream"}]
    }


def test_nan_and_infinity_are_refused_on_sockets_too(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        for number in (math.nan, math.inf, -math.inf):
            conn.write_message(pack({"id": 1, "method": "echo", "parameters": {"x": [number]}}), binary=True)
            got = unpack(await conn.read_message())
            assert got["id"] is None or got["id"] == 1
            assert got["error"]["code"] == 1011 and "NaN" in got["error"]["value"], got
        conn.write_message(pack({"id": 2, "method": "echo", "parameters": {"x": 1.5}}), binary=True)
        assert unpack(await conn.read_message()) == {"id": 2, "result": {"x": 1.5}}
        conn.close()

    run(scenario())
