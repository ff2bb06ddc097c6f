"""The msgpack serializer: strict on the wire, lenient with what the deployment stored itself."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]  # (no stubs or py.typed)
from toto.serializers import Serializer, holds_non_finite, holds_value, too_many_values

__all__ = ["MsgpackSerializer", "register_ext_type", "unregister_ext_type"]

#: msgpack's own timestamp extension; the only negative (reserved) code in use.
TIMESTAMP_CODE = -1


# Every encoding of a timestamp extension holds one of these byte pairs/triples
# (fixext4, fixext8, ext8 of length 12, each followed by the type byte 0xff). A
# body without any of them cannot hold a timestamp, so the object walk that looks
# for refused timestamps runs only when one of them appears.
def _may_hold_timestamp(data: bytes) -> bool:
    return b"\xd6\xff" in data or b"\xd7\xff" in data or b"\xc7\x0c\xff" in data


@dataclass(frozen=True)
class _ExtCodec:
    code: int
    cls: type
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


_by_code: dict[int, _ExtCodec] = {}
_by_class: dict[type, _ExtCodec] = {}


def register_ext_type(code: int, cls: type, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> None:
    """Enable msgpack extension type ``code`` in this process.

    Values of exactly ``cls`` are sent as ``ExtType(code, encode(value))`` and a
    received extension ``code`` becomes ``decode(data)``. Any extension type that
    was not enabled this way is refused on the wire with 400/1011 before a method
    runs. Codes 0..127 are the application's; msgpack reserves the negative ones
    (its timestamp, -1, is enabled by the ``msgpack_timestamps`` option instead).
    """
    if not isinstance(code, int) or not 0 <= code <= 127:
        raise ValueError(f"msgpack extension codes of applications are 0..127, not {code!r}")
    existing = _by_code.get(code)
    if existing is not None and existing.cls is not cls:
        raise ValueError(f"msgpack extension type {code} is already used for {existing.cls.__qualname__}")
    codec = _ExtCodec(code, cls, encode, decode)
    _by_code[code] = codec
    _by_class[cls] = codec


def unregister_ext_type(code: int) -> None:
    """Disable extension type ``code`` again (mostly for tests)."""
    codec = _by_code.pop(code, None)
    if codec is not None:
        _by_class.pop(codec.cls, None)


def _encode_default(obj: Any) -> Any:
    codec = _by_class.get(type(obj))
    if codec is not None:
        return msgpack.ExtType(codec.code, codec.encode(obj))
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} values cannot be sent as msgpack")


def _wire_ext_hook(code: int, data: bytes) -> Any:
    codec = _by_code.get(code)
    if codec is None:
        raise ValueError(f"msgpack extension type {code} is not enabled on this server")
    try:
        return codec.decode(data)
    except Exception as exc:
        raise ValueError(f"msgpack extension type {code} could not be decoded ({type(exc).__name__})") from None


def _stored_ext_hook(code: int, data: bytes) -> Any:
    # Stored data must never be dropped for an extension that is no longer enabled:
    # it comes back as msgpack.ExtType, which encodes to the very same bytes.
    codec = _by_code.get(code)
    if codec is None:
        return msgpack.ExtType(code, data)
    return codec.decode(data)


# A float32 (0xca) or float64 (0xcb) whose exponent bits are all set: NaN or an infinity.
# Bytes that match may be inside a string too, so a match only starts the walk below.
_NON_FINITE = re.compile(rb"\xca[\x7f\xff][\x80-\xff]|\xcb[\x7f\xff][\xf0-\xff]")


def _is_timestamp(value: Any) -> bool:
    return isinstance(value, msgpack.Timestamp)


# msgpack's type bytes 0xc0-0xdf: (bytes of the head, bytes of the length that follows it or 0,
# values it opens per unit of that length). Fixed-size values have no length; -1: never valid (0xc1).
_U8, _U16, _U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")
_HEADS: dict[int, tuple[int, struct.Struct | None, int]] = {
    0xC0: (1, None, 0), 0xC2: (1, None, 0), 0xC3: (1, None, 0),
    0xC4: (2, _U8, 0), 0xC5: (3, _U16, 0), 0xC6: (5, _U32, 0),  # bin: skip the length
    0xC7: (3, _U8, 0), 0xC8: (4, _U16, 0), 0xC9: (6, _U32, 0),  # ext: length, type byte
    0xCA: (5, None, 0), 0xCB: (9, None, 0),
    0xCC: (2, None, 0), 0xCD: (3, None, 0), 0xCE: (5, None, 0), 0xCF: (9, None, 0),
    0xD0: (2, None, 0), 0xD1: (3, None, 0), 0xD2: (5, None, 0), 0xD3: (9, None, 0),
    0xD4: (3, None, 0), 0xD5: (4, None, 0), 0xD6: (6, None, 0), 0xD7: (10, None, 0), 0xD8: (18, None, 0),
    0xD9: (2, _U8, 0), 0xDA: (3, _U16, 0), 0xDB: (5, _U32, 0),  # str: skip the length
    0xDC: (3, _U16, 1), 0xDD: (5, _U32, 1),  # array: as many values
    0xDE: (3, _U16, 2), 0xDF: (5, _U32, 2),  # map: a key and a value each
}  # fmt: skip


def msgpack_values(data: bytes, limit: int) -> int:
    """How many values the msgpack ``data`` holds (map keys included), counted from its
    type bytes without decoding anything; once more than ``limit`` are held or declared,
    any number above it. Malformed input is left to the decoder, which refuses it."""
    position, end = 0, len(data)
    counted = 0
    pending = 1  # values declared and not yet read
    while pending and position < end:
        if counted + pending > limit:
            return counted + pending
        byte = data[position]
        counted += 1
        pending -= 1
        if byte < 0x80 or byte >= 0xE0:  # fixint
            position += 1
        elif byte < 0x90:  # fixmap
            pending += 2 * (byte & 0x0F)
            position += 1
        elif byte < 0xA0:  # fixarray
            pending += byte & 0x0F
            position += 1
        elif byte < 0xC0:  # fixstr
            position += 1 + (byte & 0x1F)
        else:
            head = _HEADS.get(byte)
            if head is None or position + head[0] > end:
                return counted  # 0xc1 or a cut head: the decoder's error
            size, length, per = head
            if length is None:
                position += size
                continue
            (count,) = length.unpack_from(data, position + 1)
            if per:
                pending += per * count
                position += size
            else:
                position += size + count
    return counted


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(k): v for k, v in pairs}


class MsgpackSerializer(Serializer):
    """``application/msgpack`` (and ``application/x-msgpack``); bytes stay bytes.

    On the wire (``decode``) it refuses, as ``ValueError`` that the core answers
    with 400/1011: malformed or truncated input, bytes after the object, nesting
    deeper than msgpack's stack, a string, binary, array, map or extension whose
    declared length is more than the body could hold (or more than
    ``max_body_size``), more than ``max_values`` values (413), NaN and Infinity (as
    JSON refuses them; ``encode`` does not write them either), map keys other than
    str/bytes, and extension types not enabled. ``decode_state`` reads what the
    deployment stored itself and refuses none of that, so no stored session is lost
    when options change.
    """

    name = "msgpack"
    content_types = ("application/msgpack", "application/x-msgpack")
    safe_for_state = True
    frames = "binary"

    def __init__(self, max_size: int | None = None, timestamps: bool = False) -> None:
        #: Largest declared length of any one value (the server's max_body_size); None: the input's length.
        self.max_size = max_size
        #: Whether msgpack's timestamp extension is enabled (aware datetimes <-> ext -1).
        self.timestamps = timestamps

    def configure(self, options: Any) -> None:
        super().configure(options)
        self.max_size = int(options.max_body_size)
        self.timestamps = bool(options.get("msgpack_timestamps", False))

    def encode(self, obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, use_bin_type=True, datetime=self.timestamps, default=_encode_default)
        if _NON_FINITE.search(data) is not None and holds_non_finite(obj):
            raise ValueError("NaN and Infinity are not sent (JSON cannot carry them)")
        return data

    def decode(self, data: bytes) -> Any:
        # Declared lengths are checked before anything is allocated. An array or map
        # element takes at least one byte (a map entry two), so no honest body declares
        # more elements than it has bytes; a few bytes claiming millions are refused.
        size = len(data)
        limit = size if self.max_size is None else min(size, self.max_size)
        # Every value takes a byte at least: only a longer body can hold too many.
        if size > self.max_values and msgpack_values(data, self.max_values) > self.max_values:
            raise too_many_values(self.max_values)
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                timestamp=3 if self.timestamps else 0,
                ext_hook=_wire_ext_hook,
                max_str_len=limit,
                max_bin_len=limit,
                max_ext_len=limit,
                max_array_len=limit,
                max_map_len=limit // 2,
            )
        except msgpack.StackError:
            raise ValueError("msgpack nested too deeply") from None
        except msgpack.ExtraData:
            raise ValueError("bytes after the msgpack object") from None
        except msgpack.FormatError:
            raise ValueError("not msgpack (reserved type byte 0xc1)") from None
        except ValueError as exc:
            if str(exc).startswith("Unpack failed"):  # the C unpacker's wording for truncated input
                raise ValueError("truncated msgpack: a value needs more bytes than the body has") from None
            raise
        if _NON_FINITE.search(data) is not None and holds_non_finite(value):
            raise ValueError("NaN and Infinity are not numbers a request may carry (JSON cannot)")
        if not self.timestamps and _may_hold_timestamp(data) and holds_value(value, _is_timestamp):
            raise ValueError(
                f"msgpack extension type {TIMESTAMP_CODE} (timestamp) is not enabled on this server "
                "(option msgpack_timestamps)"
            )
        return value

    # -- signed socket calls (README "WebSockets"): the map's last entry is "hmac", and the
    # signed bytes are the map without it (its header counting one entry fewer).
    def split_signature(self, frame: bytes, message: dict[str, Any]) -> tuple[str, bytes] | None:
        given = message.get("hmac")
        if not isinstance(given, str) or list(message)[-1] != "hmac":
            return None
        tail = _str_bytes("hmac") + _str_bytes(given)
        head = _map_header(len(message))
        if not frame.startswith(head) or not frame.endswith(tail):
            return None
        return given, _map_header(len(message) - 1) + frame[len(head) : len(frame) - len(tail)]

    def add_signature(self, data: bytes, message: dict[str, Any], signature: str) -> bytes:
        count = len(message)
        head = _map_header(count)
        return _map_header(count + 1) + data[len(head) :] + _str_bytes("hmac") + _str_bytes(signature)

    def decode_state(self, data: bytes) -> Any:
        options: dict[str, Any] = {
            "raw": False,
            "strict_map_key": False,
            "timestamp": 3 if self.timestamps else 0,
            "ext_hook": _stored_ext_hook,
        }
        try:
            return msgpack.unpackb(data, **options)
        except TypeError:
            # A map keyed by an array (a tuple key when it was stored): rebuild it with tuple keys.
            return msgpack.unpackb(data, object_pairs_hook=_pairs_to_dict, **options)


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x80 | count,))
    if count < 1 << 16:
        return b"\xde" + struct.pack(">H", count)
    return b"\xdf" + struct.pack(">I", count)


def _str_bytes(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 32:
        return bytes((0xA0 | len(data),)) + data
    if len(data) < 256:
        return b"\xd9" + bytes((len(data),)) + data
    if len(data) < 1 << 16:
        return b"\xda" + struct.pack(">H", len(data)) + data
    return b"\xdb" + struct.pack(">I", len(data)) + data
