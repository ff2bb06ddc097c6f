"""Wire serializers: the interface, the bound on what a message may decode to, and the core's JSON serializer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar
from uuid import UUID

from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException

try:
    import orjson
except ImportError:  # toto-core[speed] is not installed: the stdlib's json alone
    _use_orjson = False
else:
    # The fast path below relies on orjson writing floats of 1e-4 and up as repr does
    # (3.11.7 and later: 1e+16, not 1e16); an orjson that does not is left unused.
    _SAMPLES = (1e16, 1.5e300, -1.2345678901234568e17, 1e15, 0.1, -0.0, 1.0, 123.456, 1e-4)
    _use_orjson = all(orjson.dumps(value) == repr(value).encode() for value in _SAMPLES)


#: ``max_body_values``' default: the values one request body or socket message may decode to.
MAX_VALUES = 200_000


def too_many_values(limit: int) -> TotoException:
    """What ``decode`` raises for a message of more than ``limit`` values (413, 1011)."""
    return TotoException(
        ERROR_MALFORMED_REQUEST,
        f"Request body too large once decoded: more than {limit} values (max_body_values)",
        status=413,
    )


def holds_value(value: Any, found: Callable[[Any], bool]) -> bool:
    """Whether ``found`` is true of any value inside a decoded message (lists and maps walked
    without recursion, so any depth will do)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif found(item):
            return True
    return False


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def holds_non_finite(value: Any) -> bool:
    """Whether a decoded message holds NaN or an infinity anywhere: what no serializer lets
    through either way, since JSON (and JavaScript's JSON.parse) cannot carry them. Formats
    that can walk a message only when its bytes may hold one."""
    return holds_value(value, _non_finite)


class Serializer:
    """Turns response objects into bytes and request bytes into objects.

    ``decode`` reads request bodies and socket messages: it raises ``ValueError`` (or
    ``RecursionError``) for malformed or refused input, which the core answers with
    400/1011, or ``TotoException`` for a more specific answer. ``safe_for_state`` marks
    serializers that can never run code while decoding, so they may store session
    state and event payloads; those are read back with ``decode_state``.

    A few bytes can say "a million empty maps", so ``decode`` holds what a message may
    expand to: a message of more than ``max_values`` values (containers, map keys and
    scalars alike, counted from the bytes before they are decoded) is refused with
    ``too_many_values`` (413, 1011), and a message that declares more than it holds is
    refused before anything is allocated for it. Every serializer states this bound;
    ``toto.testing.SerializerContract`` checks it with bombs of its own encoding and
    the memory its ``decode`` takes. Nesting is bounded by each decoder (about 1,000
    levels) and refused as 1011.
    """

    name: ClassVar[str] = ""
    content_types: ClassVar[tuple[str, ...]] = ()
    safe_for_state: ClassVar[bool] = True
    #: How this format travels as socket messages (PROTOCOL.md section 9): ``"text"`` frames
    #: (UTF-8), ``"binary"`` frames, or None (not on sockets). A socket reads text frames
    #: with the text one (JSON) and binary frames with the first installed binary one; a
    #: format on sockets says where a signed call's ``"hmac"`` member is
    #: (``split_signature``, ``add_signature``).
    frames: ClassVar[str | None] = None
    #: The most values one decoded message may hold (``configure`` sets it from ``max_body_values``).
    max_values: int = MAX_VALUES

    def configure(self, options: Any) -> None:
        """Called once at startup with the server options (limits, flags); a subclass that
        overrides it calls this one too."""
        self.max_values = int(options.get("max_body_values", MAX_VALUES))

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def split_signature(self, frame: bytes, message: dict[str, Any]) -> tuple[str, bytes] | None:
        """A signed socket call's ``(hmac, signed bytes)``: its ``"hmac"`` member, which must be
        the last, and the exact bytes of the frame without it; None when the frame has none
        (``message`` is the frame decoded)."""
        return None

    def add_signature(self, data: bytes, message: dict[str, Any], signature: str) -> bytes:
        """The frame of the socket call ``message`` (encoded as ``data``) with ``"hmac":
        signature`` as its last member: the client half of ``split_signature``."""
        raise NotImplementedError(f"{type(self).__name__} does not sign socket messages")

    def decode_state(self, data: bytes) -> Any:
        """Read bytes this deployment stored itself (session state, event payloads).

        Defaults to ``decode``. A serializer whose wire checks could refuse data it
        wrote earlier (size limits, extension types) relaxes them here, since a
        refusal would lose a stored session.
        """
        return self.decode(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    # orjson writes these natively; the stdlib path does the same so both answer alike.
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, UUID):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} values cannot be sent as JSON")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


# Compact separators and ASCII escapes; NaN and Infinity are not JSON (JSON.parse refuses them).
_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=_json_default)
_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# Session state and event payloads written before NaN was refused must stay readable.
_lenient_decoder = json.JSONDecoder()


def _text(data: bytes | str) -> str:
    # What json.loads does with bytes: UTF-8, -16 or -32, a BOM allowed.
    if isinstance(data, str):
        return data
    return bytes(data).decode(json.detect_encoding(data), "surrogatepass")


def _stdlib_encode(obj: Any) -> bytes:
    return _encoder.encode(obj).encode("ascii")


def _stdlib_decode(data: bytes) -> Any:
    return _decoder.decode(_text(data))


def _stdlib_decode_state(data: bytes) -> Any:
    return _lenient_decoder.decode(_text(data))


if _use_orjson:
    # Subclasses of str/int/dict/list, datetimes and dataclasses go to _json_default
    # (which refuses them) and so to the stdlib, which writes or refuses them as before.
    _ORJSON_OPTIONS = (
        orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    )
    # orjson writes floats below 1e-4 its own way (0.00001, 1e-7); repr writes 1e-05, 1e-07.
    _SMALL_FLOAT = re.compile(rb"[0-9]e-|0\.0000")
    _DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
    _LONG_NUMBER = b"0" * 19  # -9223372036854775809 has 19 digits

    def _fast_encode(obj: Any) -> bytes:
        try:
            data: bytes = orjson.dumps(obj, default=_json_default, option=_ORJSON_OPTIONS)
        except TypeError:
            # Integers beyond 64 bits, keys that are not strings, lone surrogates, nesting
            # deeper than orjson's 254, cycles and unsendable values: the stdlib writes
            # them exactly as before or raises its error.
            return _stdlib_encode(obj)
        # bytes.find, not ``in``: ``in`` first tries its argument as an integer (3x slower).
        if (
            data.isascii()  # non-ASCII text goes out as \uXXXX escapes,
            and data.find(b"\x7f") < 0  # and so does DEL
            and data.find(b"null") < 0  # NaN and Infinity, which orjson writes as null, are refused
            and ((data.find(b"e-") < 0 and data.find(b"0.0000") < 0) or not _SMALL_FLOAT.search(data))
        ):
            return data
        return _stdlib_encode(obj)

    def _fast_reader(stdlib_read: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        def read(data: bytes) -> Any:
            if bytes(data).translate(_DIGITS_AS_ZERO).find(_LONG_NUMBER) >= 0:
                return stdlib_read(data)  # orjson reads integers beyond 64 bits as floats
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                # A BOM, UTF-16 or -32, lone surrogates: read as before; anything else
                # (NaN, Infinity, 1e400, malformed text) gets the stdlib's answer.
                return stdlib_read(data)

        return read

    _fast_decode = _fast_reader(_stdlib_decode)
    _fast_decode_state = _fast_reader(_stdlib_decode_state)

    JSON_CODEC = "orjson"
    _encode, _decode, _decode_state = _fast_encode, _fast_decode, _fast_decode_state
else:
    JSON_CODEC = "json"
    _encode, _decode, _decode_state = _stdlib_encode, _stdlib_decode, _stdlib_decode_state


# Strings with their escapes: what the precise count of JSON values leaves out.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_values_bound(data: bytes) -> int:
    """At most how many values (keys included) the JSON text ``data`` holds, from its bytes.

    Every value but the first of a container follows a comma, every object value a
    colon, the first of a container its bracket: so commas, colons and opening brackets,
    plus the root, bound the count (an empty container counts twice, and punctuation
    inside strings counts too: ``_json_within`` takes both back out when it matters).
    """
    count = data.count
    return count(b",") + count(b":") + count(b"[") + count(b"{") + 1


def _json_within(data: bytes, limit: int) -> None:
    # A value takes a byte at least: a body shorter than the limit cannot exceed it.
    if len(data) <= limit:
        return
    bound = json_values_bound(data)
    if bound <= limit:
        return
    # Each string is a value itself, so a body of more strings than the limit (quotes
    # that no backslash escapes, two a string) is refused unread.
    if (data.count(b'"') - data.count(b'\\"')) // 2 > limit:
        raise too_many_values(limit)
    # The exact count: empty containers once, and no punctuation from inside strings.
    count = data.count
    bound -= count(b"[]") + count(b"{}")
    for match in _JSON_STRING.finditer(data):
        start, end = match.span()
        bound -= (
            count(b",", start, end) + count(b":", start, end) + count(b"[", start, end) + count(b"{", start, end)
            - count(b"[]", start, end) - count(b"{}", start, end)
        )  # fmt: skip
        if bound <= limit:
            return
    if bound > limit:
        raise too_many_values(limit)


class JsonSerializer(Serializer):
    """JSON, ASCII-only on output so clients that hash UTF-16 code units agree (compat).

    Compact, ``\\uXXXX`` escapes for everything outside printable ASCII, floats as
    Python's ``repr``, integers of any size, sets as lists, enums as their value and
    UUIDs as their string; NaN and Infinity are refused both ways (a ``ValueError``).
    With ``toto-core[speed]`` installed (``JSON_CODEC == "orjson"``) orjson does the
    work and the stdlib writes what orjson would write differently, so the bytes are
    the same either way.
    """

    name = "json"
    content_types = ("application/json",)
    frames = "text"

    # The codec's functions themselves: no extra call per request.
    encode = staticmethod(_encode)
    decode_state = staticmethod(_decode_state)  # type: ignore[assignment]

    def decode(self, data: bytes) -> Any:
        _json_within(data, self.max_values)
        return _decode(data)

    def split_signature(self, frame: bytes, message: dict[str, Any]) -> tuple[str, bytes] | None:
        return json_split_signature(frame)

    def add_signature(self, data: bytes, message: dict[str, Any], signature: str) -> bytes:
        return data[:-1] + b',"hmac":"' + signature.encode("ascii") + b'"}'


_TEXT_HMAC = re.compile(rb',"hmac":"([A-Za-z0-9+/=]*)"\}\Z')


def json_split_signature(frame: bytes) -> tuple[str, bytes] | None:
    """A JSON call ending in ``,"hmac":"<base64>"}``: the signature and the text before it
    with the ``}`` put back (README "WebSockets")."""
    start = frame.rfind(b',"hmac":"')
    found = _TEXT_HMAC.match(frame, start) if start >= 0 else None
    if found is None:
        return None
    return found.group(1).decode("ascii"), frame[:start] + b"}"
