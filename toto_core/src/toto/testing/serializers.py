"""The serializer contract: what every wire serializer must do, the core's JSON and plugins' alike.

Subclass with a ``serializer`` fixture returning the serializer, configured as a server
would configure it::

    import pytest
    from toto.testing import SerializerContract

    class TestMySerializer(SerializerContract):
        @pytest.fixture
        def serializer(self):
            return MySerializer()
"""

from __future__ import annotations

from typing import Any

import pytest

from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException
from toto.serializers import Serializer

#: What ``decode`` may raise for input it refuses (the core answers 400/1011); anything else is a bug.
REFUSALS = (ValueError, TypeError, RecursionError, UnicodeDecodeError, OverflowError, TotoException)
#: What ``encode`` may raise for a value it cannot carry (the core answers 1000 without a traceback).
UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)

#: Protocol messages with every kind of value JSON has: each serializer must carry them exactly.
ENVELOPES: list[dict[str, Any]] = [
    {"method": "notes.add", "parameters": {"text": "héllo wörld ✓ 漢字 🎉", "n": 3}},
    {"result": {"count": 2, "ratio": 0.25, "ok": True, "no": False, "none": None}},
    {"result": [0, -1, 2**31, 2**53, 2**63 - 1, -(2**63), 1.5, -2.75, 1e300, "", [], {}]},
    {"error": {"code": 1003, "value": "Missing parameters: user_id"}},
    {"batch": {"a": {"method": "echo", "parameters": {}}, "b": {"method": "x.y", "parameters": {"k": [1, [2, [3]]]}}}},
    {"result": {"nested": {"a": {"b": {"c": [True, False, None, {"d": "e"}]}}}}, "session": {
        "session_id": "J3gYvVJ0i2c6qS9vGm7TQA", "expires": 1767225600.125, "user_id": "ada@example.com"}},
]  # fmt: skip


class SerializerContract:
    """Subclass with a ``serializer`` fixture returning the ``Serializer`` under test."""

    def test_it_names_itself_and_its_content_types(self, serializer: Serializer) -> None:
        assert serializer.name and serializer.name == serializer.name.strip().lower()
        assert serializer.content_types, "a serializer handles at least one content type"
        for content_type in serializer.content_types:
            assert "/" in content_type and content_type == content_type.strip().lower(), content_type

    @pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: next(iter(e)))
    def test_protocol_messages_round_trip_exactly(self, serializer: Serializer, envelope: dict[str, Any]) -> None:
        data = serializer.encode(envelope)
        assert isinstance(data, bytes)
        decoded = serializer.decode(data)
        assert decoded == envelope
        assert _types(decoded) == _types(envelope), "ints stay ints, floats floats, lists lists"

    def test_encoding_is_deterministic(self, serializer: Serializer) -> None:
        # Signatures cover the exact bytes, so the same answer must give the same bytes.
        for envelope in ENVELOPES:
            assert serializer.encode(envelope) == serializer.encode(envelope)

    @pytest.mark.parametrize(
        "data", [b"\xff\xfe\x00\x01 not this format", b"\x00" * 7, b"{" * 50, b"\xc1", b"]"], ids=repr
    )
    def test_garbage_is_refused_the_way_the_core_answers(self, serializer: Serializer, data: bytes) -> None:
        try:
            serializer.decode(data)
        except REFUSALS as refused:
            if isinstance(refused, TotoException):
                assert refused.code == ERROR_MALFORMED_REQUEST
        # Some formats read a few of these bytes as a value; that is fine as long as nothing else escapes.

    def test_truncated_messages_are_refused(self, serializer: Serializer) -> None:
        whole = serializer.encode(ENVELOPES[0])
        for end in range(len(whole) - 1, 0, -max(1, len(whole) // 16)):
            with pytest.raises(REFUSALS):
                decoded = serializer.decode(whole[:end])
                if decoded != ENVELOPES[0]:  # a prefix that is a value of its own is not the message
                    raise ValueError("a different value")

    def test_deep_nesting_is_refused_or_carried_never_a_crash(self, serializer: Serializer) -> None:
        deep: Any = "bottom"
        for _ in range(100_000):
            deep = [deep]
        try:
            data = serializer.encode({"result": deep})
        except UNENCODABLE:
            return
        try:
            serializer.decode(data)
        except REFUSALS:
            pass

    def test_values_it_cannot_carry_raise_what_the_core_catches(self, serializer: Serializer) -> None:
        with pytest.raises(UNENCODABLE):
            serializer.encode({"result": object()})

    def test_state_it_stores_reads_back(self, serializer: Serializer) -> None:
        if not serializer.safe_for_state:
            pytest.skip("not a state serializer")
        state = {"count": 3, "notes": ["héllo", "✓"], "profile": {"name": "Zoë", "age": None}, "ratio": 0.5}
        assert serializer.decode_state(serializer.encode(state)) == state
        assert serializer.decode_state(serializer.encode({})) == {}


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return ["list", *(_types(item) for item in value)]
    # A subclass is the same kind of value (BSON reads large integers as bson.Int64, an int).
    for kind in (bool, int, float, str, bytes):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__
