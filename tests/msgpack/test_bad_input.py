"""Bad msgpack bodies: malformed or truncated input, bodies whose headers declare more than
max_body_size (or more than the body holds), extension types the server did not enable.
Each answers HTTP 400 with code 1011 in the protocol's shape, runs nothing (the session's
counter does not move), and the server keeps serving."""

from __future__ import annotations

import datetime
import math
import struct
from decimal import Decimal

import msgpack
import pytest
from toto.client import TotoClientError
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP
from tests.msgpack.conftest import EXT_APP, pack, post, unpack, user

LIMIT = 4096


def call(parameters_bytes: bytes, method: str = "counter.increment") -> bytes:
    """A call whose ``parameters`` value is the given raw msgpack bytes."""
    return b"\x82" + pack("method") + pack(method) + pack("parameters") + parameters_bytes


MALFORMED = {
    "empty map then junk": b"\x80\xc1",
    "reserved byte": b"\xc1",
    "truncated map": b"\x82\xa6method",
    "truncated string": call(b"\xa5ab"),
    "trailing bytes": pack({"method": "counter.increment"}) + b"\x00",
    "not an object": pack(["counter.increment"]),
    "a bare string": pack("counter.increment"),
    "invalid utf-8": call(b"\x81\xa1k\xa2\xff\xfe"),
    "array as map key": call(b"\x81\x91\x01\x01"),
    "int as map key": call(b"\x81\x01\x01"),
    "json sent as msgpack": b'{"method": "counter.increment"}',
    "nested too deeply": call(b"\x91" * 3000 + b"\xc0"),
    "map nested too deeply": call(b"\x81\xa1k" * 1200 + b"\xc0"),
    # What JSON cannot carry (SECURITY.md): refused as JSON refuses it.
    "NaN": call(pack({"x": [1.5, math.nan]})),
    "Infinity": call(pack({"x": {"y": math.inf}})),
    "-Infinity as float32": call(b"\x81\xa1x\xca\xff\x80\x00\x00"),
    "NaN as float32": call(b"\x81\xa1x\xca\x7f\xc0\x00\x00"),
}

OVERSIZE = {
    # Headers that declare more than max_body_size: refused before anything is allocated.
    "bin32 of 1 GiB": call(b"\xc6" + struct.pack(">I", 1 << 30) + b"x" * 16),
    "str32 of 4 GiB": call(b"\xdb\xff\xff\xff\xff" + b"x" * 16),
    "array32 of 2**31 items": call(b"\xdd" + struct.pack(">I", 1 << 31) + b"\x00" * 16),
    "map32 of 2**31 entries": call(b"\xdf" + struct.pack(">I", 1 << 31) + b"\xa1k\x00" * 8),
    "ext32 of 1 GiB": call(b"\xc9" + struct.pack(">I", 1 << 30) + b"\x05" + b"x" * 16),
    # Within max_body_size, but more elements than the body has bytes.
    "array16 longer than the body": call(b"\xdc\xff\xff" + b"\x00" * 100),
    "bin16 longer than the body": call(b"\xc5\x0f\xff" + b"x" * 100),
    "array of a million nils claimed in a few bytes": call(b"\xdd" + struct.pack(">I", 1_000_000) + b"\xc0" * 8),
}

EXTENSIONS = {
    "ext type 5": call(pack({"v": msgpack.ExtType(5, b"data")})),
    "ext type 127": call(pack({"v": msgpack.ExtType(127, b"")})),
    "negative ext type -7": call(b"\x81\xa1v\xd4\xf9x"),
    "timestamp 32": call(pack({"when": msgpack.Timestamp(1_700_000_000)})),
    "timestamp 64": call(pack({"when": msgpack.Timestamp(1_700_000_000, 5)})),
    "timestamp 96": call(pack({"when": msgpack.Timestamp(2**40, 1)})),
    "timestamp deep in a list": call(pack({"l": [1, [2, {"t": msgpack.Timestamp(0, 1)}]]})),
}


@pytest.fixture(scope="module")
def limited() -> ServerProcess:
    options = {
        "password_cost": 10,
        "logging": "warning",
        "database": "memory",
        "max_body_size": LIMIT,
    }
    with ServerProcess(options, cwd=BASIC_APP) as srv:
        yield srv


def _assert_refused_and_nothing_ran(srv: ServerProcess, body: bytes) -> None:
    client = srv.client(serializer="msgpack")
    client.create(user(), "pw")
    assert client.call("counter.increment") == 1
    status, kind, answer = post(client, body)
    assert status == 400, (status, answer)
    assert answer["error"]["code"] == 1011 and isinstance(answer["error"]["value"], str)
    assert "Traceback" not in answer["error"]["value"]
    assert kind == "application/msgpack", "the refusal is in the type the client asked for"
    assert client.call("counter.increment") == 2, "the refused call did not run"


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_msgpack_is_400_1011(limited: ServerProcess, body: bytes) -> None:
    assert len(body) < LIMIT
    _assert_refused_and_nothing_ran(limited, body)


@pytest.mark.parametrize("body", OVERSIZE.values(), ids=OVERSIZE.keys())
def test_declared_sizes_past_the_body_or_max_body_size_are_400_1011(limited: ServerProcess, body: bytes) -> None:
    assert len(body) < LIMIT
    _assert_refused_and_nothing_ran(limited, body)


@pytest.mark.parametrize("body", EXTENSIONS.values(), ids=EXTENSIONS.keys())
def test_extension_types_not_enabled_are_400_1011(limited: ServerProcess, body: bytes) -> None:
    _assert_refused_and_nothing_ran(limited, body)
    status, _, answer = post(limited.client(serializer="msgpack"), body)
    assert "not enabled" in answer["error"]["value"]


def test_refusals_in_batches_run_no_entry(limited: ServerProcess) -> None:
    batch = b"\x81" + pack("batch") + b"\x81" + pack("a") + call(pack({"t": msgpack.ExtType(9, b"")}))
    _assert_refused_and_nothing_ran(limited, batch)


def test_a_body_over_max_body_size_is_413(limited: ServerProcess) -> None:
    client = limited.client(serializer="msgpack")
    body = pack({"method": "echo", "parameters": {"b": b"x" * LIMIT}})
    status, kind, answer = post(client, body)
    assert status == 413 and answer["error"]["code"] == 1011 and "max_body_size" in answer["error"]["value"]
    assert kind == "application/msgpack", "refused in the type the client reads"
    status, kind, answer = post(client, body, Accept="application/json")
    assert status == 413 and kind == "application/json" and answer["error"]["code"] == 1011
    with pytest.raises(TotoClientError) as refused:
        client.call("echo", {"b": b"x" * LIMIT})
    assert refused.value.code == 1011 and refused.value.status == 413


def test_a_body_of_more_values_than_max_body_values_is_413(start_server) -> None:
    values = 500
    client = start_server(database="memory", max_body_values=values).client(serializer="msgpack")
    for many in ([None] * values, [[]] * values, [[None] * 9] * (values // 10)):
        status, kind, answer = post(client, pack({"method": "echo", "parameters": {"x": many}}))
        assert status == 413 and answer["error"]["code"] == 1011, answer
        assert "max_body_values" in answer["error"]["value"] and kind == "application/msgpack"
    within = [None] * (values // 2)
    assert client.call("echo", {"x": within}) == {"x": within}


def test_a_body_at_max_body_size_is_served(limited: ServerProcess) -> None:
    client = limited.client(serializer="msgpack")
    payload = b"\x07" * (LIMIT - 64)
    body = pack({"method": "echo", "parameters": {"b": payload}})
    assert len(body) <= LIMIT
    status, _, answer = post(client, body)
    assert status == 200 and answer["result"]["b"] == payload
    many = list(range(100)) * 12
    assert client.call("echo", {"l": many}) == {"l": many}


def test_the_server_keeps_serving_after_every_refusal(limited: ServerProcess) -> None:
    client = limited.client(serializer="msgpack")
    for body in (*MALFORMED.values(), *OVERSIZE.values(), *EXTENSIONS.values()):
        status, _, _ = post(client, body, Accept="application/json")
        assert status == 400
    assert client.call("echo", {"alive": b"yes"}) == {"alive": b"yes"}


def test_timestamps_when_the_server_enables_them(start_server) -> None:
    srv = start_server(database="memory", msgpack_timestamps=True)
    client = srv.client(serializer="msgpack")
    when = datetime.datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    status, _, answer = post(
        client, pack({"method": "echo", "parameters": {"t": msgpack.Timestamp.from_datetime(when)}})
    )
    assert status == 200 and answer["result"]["t"] == when, "decoded as a datetime and sent back as a timestamp"
    # Other extension types are still refused.
    status, _, answer = post(client, pack({"method": "echo", "parameters": {"v": msgpack.ExtType(3, b"")}}))
    assert status == 400 and answer["error"]["code"] == 1011


def test_extension_types_the_application_enabled(start_server) -> None:
    srv = start_server(cwd=EXT_APP, database="memory")
    client = srv.client(serializer="msgpack")
    price = msgpack.ExtType(1, b"12.50")
    status, _, answer = post(client, pack({"method": "kinds", "parameters": {"price": price, "b": b"\x00"}}))
    assert status == 200, answer
    assert answer["result"]["kinds"] == {"price": "Decimal", "b": "bytes"}
    raw = client.request(pack({"method": "kinds", "parameters": {"price": price}}))[2]
    assert msgpack.unpackb(raw, raw=False)["result"]["echo"]["price"] == price, "sent back as the same ext type"
    status, _, answer = post(client, pack({"method": "kinds", "parameters": {"v": msgpack.ExtType(2, b"")}}))
    assert status == 400 and answer["error"]["code"] == 1011 and "2" in answer["error"]["value"]
    status, _, answer = post(client, pack({"method": "kinds", "parameters": {"v": msgpack.ExtType(1, b"\xff")}}))
    assert status == 400 and answer["error"]["code"] == 1011, "an enabled type that fails to decode"
    assert Decimal("12.50") == Decimal(b"12.50".decode())
    assert unpack(pack({"ok": 1})) == {"ok": 1}


def test_bytes_that_look_like_a_timestamp_are_still_bytes(limited: ServerProcess) -> None:
    client = limited.client(serializer="msgpack")
    lookalikes = {"a": b"\xd6\xff\x00\x00\x00\x00", "b": [b"\xd7\xff" + b"\x00" * 8], "c": "x\xff", "d": -1}
    assert client.call("echo", lookalikes) == lookalikes
