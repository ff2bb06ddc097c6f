"""The counts behind ``max_body_values`` (issue 23) are exact for every message a serializer
writes: a bound that undercounts lets bombs through, one that overcounts refuses honest calls."""

from __future__ import annotations

import json
from typing import Any

import bson
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toto.serializers import JsonSerializer
from toto_mongo.serializer import bson_values
from toto_msgpack.serializer import msgpack_values

from tests.fuzz.conftest import EXAMPLES

COUNTS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 500)
# Text with what the counts look for inside strings: quotes, escapes and JSON punctuation.
text = st.text(alphabet=st.sampled_from(list('ab,:[]{}"\\é\n ')), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
messages = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(text, inner, max_size=6), max_leaves=40
)


def values(value: Any) -> int:
    """Containers, map keys and scalars: what ``max_body_values`` counts."""
    if isinstance(value, dict):
        return 1 + sum(1 + values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values(v) for v in value)
    return 1


def elements(document: dict[str, Any]) -> int:
    """A BSON document and its elements, nested ones included (a key is part of its element)."""

    def inner(value: Any) -> int:
        if isinstance(value, dict):
            return sum(1 + inner(v) for v in value.values())
        if isinstance(value, list):
            return sum(1 + inner(v) for v in value)
        return 0

    return 1 + inner(document)


@COUNTS
@given(message=messages)
def test_json_counts_exactly(message: Any) -> None:
    serializer = JsonSerializer()
    data = json.dumps(message, separators=(",", ":")).encode()
    exact = values(message)
    serializer.max_values = exact
    assert serializer.decode(data) == message
    serializer.max_values = exact - 1
    if exact - 1 >= 1:
        with pytest.raises(Exception, match="max_body_values"):
            serializer.decode(data)


@COUNTS
@given(message=messages)
def test_msgpack_counts_exactly(message: Any) -> None:
    data = msgpack.packb(message, use_bin_type=True)
    assert msgpack_values(data, 10**9) == values(message)
    assert msgpack_values(data, values(message) - 1) > values(message) - 1


@COUNTS
@given(message=st.dictionaries(text.map(lambda t: t.replace("\x00", "")), messages, max_size=6))
def test_bson_counts_exactly(message: dict[str, Any]) -> None:
    message = {k: v for k, v in message.items()}
    plain = json.loads(json.dumps(message), parse_int=lambda t: int(t) if -(2**63) <= int(t) < 2**63 else float(t))
    data = bson.encode(plain)
    assert bson_values(data, 10**9) == elements(plain)
    assert bson_values(data, elements(plain) - 1) > elements(plain) - 1
