"""The JSON codec writes exactly the stdlib's bytes and reads exactly what the stdlib reads.

With toto-core[speed] installed orjson does the work (the test venv installs it); the
same answers must come out byte for byte when it is not installed, since HMACs are
computed over these bytes and clients hash them. The reference is the stdlib's json
with the protocol's settings: compact, ASCII-only, NaN and Infinity refused.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import math
import random
import struct
import uuid
from typing import Any

import pytest
from toto import serializers
from toto.serializers import JsonSerializer
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST

CODEC = JsonSerializer()


def reference_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} values cannot be sent as JSON")


def reference(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=reference_default
    ).encode("ascii")


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str, enum.Enum):
    NEW = "new"


class Name(str):
    pass


class Count(int):
    pass


class Record(dict):  # type: ignore[type-arg]
    pass


@dataclasses.dataclass
class Point:
    x: int


def floats(rng: random.Random) -> list[float]:
    out = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 1e15, 1e-4, 1e-5]
    out += [0.1, 1 / 3, 1e22, 1e-7, 123456789012345680.0, 9007199254740993.0, 0.00001234, 1e21, 1e-300]
    for exponent in range(-325, 309):
        out += [float(f"1e{exponent}"), float(f"-1.2345678901234567e{exponent}"), float(f"5e{exponent}")]
    for _ in range(20_000):
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            out.append(value)
    out += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30) for _ in range(20_000)]
    return [value for value in out if math.isfinite(value)]


def integers(rng: random.Random) -> list[int]:
    edges = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64)]
    edges += [2**100, -(2**200), 10**300, 10**19, 10**20 - 1]
    return edges + [rng.randint(-(2**80), 2**80) for _ in range(2_000)] + [rng.randint(-1000, 1000) for _ in range(200)]


STRINGS = [
    "",
    "plain ascii",
    'quote " backslash \\ slash / </script>',
    "".join(chr(c) for c in range(32)) + "\x7f",
    "héllo ✓ 漢字 🎉",
    "\u2028\u2029 line separators",
    "\ud800 lone surrogate \udfff",
    "\U0010ffff astral",
    "one-off e-mail 0.0000 null",  # words that look like what the fast path checks for
    "x" * 5000,
]


def containers(rng: random.Random) -> list[Any]:
    deep: Any = 1
    for _ in range(300):  # deeper than orjson's limit of 254
        deep = [deep]
    out: list[Any] = [
        [],
        {},
        (1, 2),
        [None, True, False],
        {"a": {"b": [1, 2.5, "c", None]}},
        {3: "int key", 2.5: "float key", True: "bool key", None: "none key"},
        {"ids": {7}, "tags": frozenset({"a"})},
        [Colour.RED, Level.HIGH, Tag.NEW],
        uuid.UUID(int=0x1234),
        Name("a str subclass"),
        Count(12),
        Record(a=1),
        collections.OrderedDict([("b", 1), ("a", 2)]),
        {Name("k"): 1},
        deep,
        {"result": {"message": "hello, toto", "n": 42, "items": [1, 2, 3], "nested": {"ok": True}}},
    ]
    leaves: list[Any] = [*STRINGS, *integers(rng)[:50], *floats(rng)[:200], None, True, False]
    for _ in range(500):
        out.append({rng.choice(STRINGS[:6]) + str(i): rng.choice(leaves) for i in range(rng.randint(0, 6))})
        out.append([rng.choice(leaves) for _ in range(rng.randint(0, 6))])
    return out


def all_values() -> list[Any]:
    rng = random.Random(15)
    return [*floats(rng), *integers(rng), *STRINGS, *containers(rng), None, True, False]


def test_the_test_environment_has_the_fast_codec():
    # The suite runs with toto-core[speed]; the stdlib path is tested over HTTP below.
    assert serializers.JSON_CODEC == "orjson", "install toto-core[speed] (nox does)"


def test_encode_writes_the_stdlib_bytes_for_every_value():
    mismatches = [(v, CODEC.encode(v), reference(v)) for v in all_values() if CODEC.encode(v) != reference(v)]
    assert not mismatches, mismatches[:5]


def test_decode_reads_what_the_stdlib_reads():
    for value in all_values():
        data = reference(value)
        # repr tells 1 from 1.0 and -0.0 from 0.0, which == does not.
        assert repr(CODEC.decode(data)) == repr(json.loads(data)), data[:200]
        assert repr(CODEC.decode_state(data)) == repr(json.loads(data)), data[:200]


@pytest.mark.parametrize(
    "data",
    [
        '{"a":"é"}'.encode("utf-16"),
        '{"a":"é"}'.encode("utf-32"),
        b'\xef\xbb\xbf{"bom":1}',
        b'"\\ud800"',
        b'{"a":1,"a":2}',
        b"[1e-400, -0, -0.0, 1E5]",
        b"18446744073709551616",
        b'{"n": 123456789012345678901234567890}',
    ],
)
def test_decode_reads_what_the_stdlib_reads_beyond_plain_utf8(data):
    assert repr(CODEC.decode(data)) == repr(json.loads(data))


@pytest.mark.parametrize(
    "data", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b"[-1e400]", b"[1" + b"0" * 400 + b".0]"]
)
def test_nan_and_infinity_are_refused_on_input(data):
    with pytest.raises(ValueError):
        CODEC.decode(data)


def test_stored_state_with_nan_stays_readable():
    assert repr(CODEC.decode_state(b'{"x": NaN, "y": [Infinity, -Infinity]}')) == "{'x': nan, 'y': [inf, -inf]}"


@pytest.mark.parametrize("value", [math.nan, [1.0, math.inf], {"x": {"y": -math.inf}}, [[math.nan] * 3]])
def test_nan_and_infinity_are_never_written(value):
    with pytest.raises(ValueError):
        CODEC.encode(value)


@pytest.mark.parametrize(
    "value",
    [object(), datetime.datetime(2026, 1, 2), datetime.date(2026, 1, 2), Point(1), b"raw", {"a": [1, object()]}],
)
def test_unsendable_values_name_their_type(value):
    with pytest.raises(TypeError, match="values cannot be sent as JSON"):
        CODEC.encode(value)


def test_cycles_are_refused():
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        CODEC.encode(cycle)


# -- over HTTP, with the fast codec and without it ----------------------------------------------


@pytest.fixture(scope="module", params=["orjson", "json"])
def codec_server(request, tmp_path_factory):
    env = {}
    if request.param == "json":
        # An orjson that cannot be imported: the server runs as if toto-core[speed] were absent.
        hidden = tmp_path_factory.mktemp("no-orjson")
        (hidden / "orjson.py").write_text('raise ImportError("hidden by the test")\n')
        env["PYTHONPATH"] = str(hidden)
    with ServerProcess({**FAST, "database": "memory"}, cwd=BASIC_APP, env=env) as server:
        assert server.client().call("python_value", {"kind": "codec"}) == request.param
        yield server
        assert "Traceback" not in server.output()


def raw_call(server: ServerProcess, body: bytes) -> tuple[int, bytes]:
    status, _, data = server.client().request(body, sign=False)
    return status, data


ECHOED = [
    {"big": [2**64, -(2**70), 10**30], "floats": [-0.0, 1e16, 1e-5, 1e-7, 5e-324, 0.1, 1e22, 1.5e300]},
    {"text": STRINGS},
    {"keys": {"é": 1, "🎉": 2, "</": 3}, "nested": [[[{"a": None}]]], "empty": [{}, [], ""]},
]


@pytest.mark.parametrize("parameters", ECHOED)
def test_echo_answers_the_stdlib_bytes(codec_server, parameters):
    body = reference({"method": "echo", "parameters": parameters})
    status, data = raw_call(codec_server, body)
    assert status == 200
    assert data == reference({"result": json.loads(body)["parameters"]})


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_nan_and_infinity_in_a_request_are_400_1011(codec_server, literal):
    status, data = raw_call(codec_server, b'{"method": "echo", "parameters": {"x": ' + literal + b"}}")
    assert status == 400
    assert json.loads(data)["error"]["code"] == 1011


@pytest.mark.parametrize(
    "call",
    [
        {"method": "not_a_number"},  # NaN and Infinity
        {"method": "python_value", "parameters": {"kind": "datetime"}},
        {"method": "python_value", "parameters": {"kind": "bytes"}},
    ],
)
def test_a_result_json_cannot_carry_is_1000_in_valid_json(codec_server, call):
    status, data = raw_call(codec_server, reference(call))
    answer = json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in an answer"))
    assert answer["error"]["code"] == 1000


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("set", {"ids": [7]}),
        ("frozenset", ["a"]),
        ("uuid", "00000000-0000-0000-0000-000000001234"),
        ("enum", ["red", 3]),
    ],
)
def test_sets_enums_and_uuids_are_sent_as_json(codec_server, kind, result):
    assert codec_server.client().call("python_value", {"kind": kind}) == result


def test_answers_are_ascii_with_no_script_escaping(codec_server):
    status, data = raw_call(codec_server, reference({"method": "echo", "parameters": {"s": "</script> é"}}))
    assert data == b'{"result":{"s":"</script> \\u00e9"}}'
