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

import math
import tracemalloc
from collections.abc import Callable
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


#: The bound the bomb tests set (``Serializer.max_values``), small so that they run quickly.
BOMB_LIMIT = 10_000
#: Decoding bombs: n -> a message of about n values, few bytes each once encoded.
BOMBS: dict[str, Callable[[int], Any]] = {
    "empty maps": lambda n: [{} for _ in range(n)],
    "empty lists": lambda n: [[] for _ in range(n)],
    "short strings": lambda n: ["ab"] * n,
    "nulls": lambda n: [None] * n,
    "small numbers": lambda n: [7] * n,
    "one wide map": lambda n: {f"k{i}": i for i in range(n // 2)},
    "lists of lists": lambda n: [[[0] * 9] for _ in range(n // 10)],
}
#: Bytes a refused bomb's decode may allocate, per byte of the message and per value of the bound.
BOMB_BYTES_PER_BYTE, BOMB_BYTES_PER_VALUE = 2, 200


class SerializerContract:
    """Subclass with a ``serializer`` fixture returning the ``Serializer`` under test."""

    @pytest.mark.parametrize("shape", list(BOMBS))
    def test_decoding_bombs_are_refused_before_they_are_allocated(self, serializer: Serializer, shape: str) -> None:
        """A message of many more values than ``max_values`` is refused (413, 1011) with
        memory bounded by the message and the bound, never by what it would decode to."""
        assert isinstance(serializer.max_values, int) and serializer.max_values > 0, "it states its bound"
        serializer.max_values = BOMB_LIMIT
        data = serializer.encode({"method": "echo", "parameters": {"x": BOMBS[shape](100 * BOMB_LIMIT)}})
        tracemalloc.start()
        try:
            with pytest.raises(TotoException) as refused:
                serializer.decode(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (refused.value.code, refused.value.status) == (ERROR_MALFORMED_REQUEST, 413), refused.value
        bound = BOMB_BYTES_PER_BYTE * len(data) + BOMB_BYTES_PER_VALUE * BOMB_LIMIT
        assert peak <= bound, f"decoding {len(data)} bytes took {peak} bytes before refusing them (bound {bound})"

    @pytest.mark.parametrize("shape", list(BOMBS))
    def test_messages_within_the_bound_are_decoded(self, serializer: Serializer, shape: str) -> None:
        serializer.max_values = BOMB_LIMIT
        message = {"method": "echo", "parameters": {"x": BOMBS[shape](BOMB_LIMIT // 2)}}
        assert serializer.decode(serializer.encode(message)) == message

    @pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf], ids=repr)
    def test_nan_and_infinity_are_never_written(self, serializer: Serializer, number: float) -> None:
        # JSON cannot carry them: a client of another format must not get what a JSON client cannot.
        with pytest.raises(UNENCODABLE):
            serializer.encode({"result": {"x": [1, number]}})

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

    @pytest.mark.parametrize("count", [2, 15, 16, 40])
    def test_signed_socket_calls_are_cut_where_the_client_signed(self, serializer: Serializer, count: int) -> None:
        """A format on sockets (``frames``): ``add_signature`` appends the ``hmac`` member last
        and ``split_signature`` finds it and the exact bytes the client signed (the map
        header's sizes change at 16 entries in msgpack)."""
        if serializer.frames is None:
            pytest.skip("not a socket format (frames is None)")
        assert serializer.frames in ("text", "binary")
        message: dict[str, Any] = {"id": 1, "method": "a.b", "parameters": {"é": [1, 2.5, None]}}
        message.update({f"extra{i}": i for i in range(count - len(message))})
        data = serializer.encode(message)
        frame = serializer.add_signature(data, message, "c2lnbmVk+/==")
        decoded = serializer.decode(frame)
        assert list(decoded)[-1] == "hmac" and decoded == {**message, "hmac": "c2lnbmVk+/=="}
        assert serializer.split_signature(frame, decoded) == ("c2lnbmVk+/==", data)
        assert serializer.split_signature(data, serializer.decode(data)) is None, "an unsigned call has none"

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
