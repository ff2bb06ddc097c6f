"""The msgpack serializer: strict on the wire, lenient with what the deployment stored itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]  # (no stubs or py.typed)
from toto.serializers import Serializer

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


def _holds_timestamp(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


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
    ``max_body_size``), map keys other than str/bytes, and extension types not
    enabled. ``decode_state`` reads what the deployment stored itself and refuses
    none of that, so no stored session is lost when options change.
    """

    name = "msgpack"
    content_types = ("application/msgpack", "application/x-msgpack")
    safe_for_state = True

    def __init__(self, max_size: int | None = None, timestamps: bool = False) -> None:
        #: Largest declared length of any one value (the server's max_body_size); None: the input's length.
        self.max_size = max_size
        #: Whether msgpack's timestamp extension is enabled (aware datetimes <-> ext -1).
        self.timestamps = timestamps

    def configure(self, options: Any) -> None:
        self.max_size = int(options.max_body_size)
        self.timestamps = bool(options.get("msgpack_timestamps", False))

    def encode(self, obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, use_bin_type=True, datetime=self.timestamps, default=_encode_default)
        return data

    def decode(self, data: bytes) -> Any:
        # Declared lengths are checked before anything is allocated. An array or map
        # element takes at least one byte (a map entry two), so no honest body declares
        # more elements than it has bytes; a few bytes claiming millions are refused.
        size = len(data)
        limit = size if self.max_size is None else min(size, self.max_size)
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
        if not self.timestamps and _may_hold_timestamp(data) and _holds_timestamp(value):
            raise ValueError(
                f"msgpack extension type {TIMESTAMP_CODE} (timestamp) is not enabled on this server "
                "(option msgpack_timestamps)"
            )
        return value

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
