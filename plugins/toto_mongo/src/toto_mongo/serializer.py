"""``application/bson``: requests and responses as BSON documents, on pymongo's ``bson`` package.

BSON carries what JSON cannot: binary values arrive as ``bytes`` and datetimes as
timezone-aware ``datetime`` objects (UTC, millisecond precision), and both go back
out the same way. Decoding never runs code (BSON's JavaScript type is an inert
string wrapper), so the serializer may also store session state.
"""

from __future__ import annotations

import datetime
import re
import struct
from typing import Any, ClassVar

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, TypeRegistry
from bson.errors import BSONError
from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException
from toto.serializers import Serializer, holds_non_finite, too_many_values

#: The largest document BSON (and MongoDB) allows: 16 MiB.
MAX_DOCUMENT_SIZE = 16 * 1024 * 1024


def _fallback(value: Any) -> Any:
    # The core's JSON answers sets as lists; BSON does the same.
    if isinstance(value, (set, frozenset)):
        return list(value)
    return value


CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    document_class=dict,
    tz_aware=True,
    tzinfo=datetime.timezone.utc,
    uuid_representation=UuidRepresentation.STANDARD,
    type_registry=TypeRegistry(fallback_encoder=_fallback),
)


_INT32 = struct.Struct("<i")
# Bytes of each element type's value after its key; None: a length-prefixed or special value below.
_FIXED = {
    0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0,
}  # fmt: skip
_STRINGS = (0x02, 0x0D, 0x0E)  # string, JavaScript code, symbol: int32 length, then the bytes
_DOCUMENTS = (0x03, 0x04)  # document, array: read on in place (their elements count too)


def bson_values(data: bytes, limit: int) -> int:
    """How many elements the BSON document ``data`` holds, nested ones included, counted
    from its bytes without decoding anything; once more than ``limit``, any number above
    it. Malformed input is left to the decoder, which refuses it."""
    position, end, counted = 4, len(data), 1
    try:
        while position < end and counted <= limit:
            kind = data[position]
            if kind == 0:  # the end of a document
                position += 1
                continue
            counted += 1
            position = data.index(b"\0", position + 1) + 1  # past the key
            fixed = _FIXED.get(kind)
            if fixed is not None:
                position += fixed
            elif kind in _DOCUMENTS:
                position += 4  # its elements follow
            elif kind in _STRINGS:
                position += 4 + _INT32.unpack_from(data, position)[0]
            elif kind == 0x0F:  # code with scope: an int32 of its whole size, itself included
                position += _INT32.unpack_from(data, position)[0]
            elif kind == 0x05:  # binary: int32 length, subtype, bytes
                position += 5 + _INT32.unpack_from(data, position)[0]
            elif kind == 0x0B:  # regular expression: two C strings
                position = data.index(b"\0", data.index(b"\0", position) + 1) + 1
            elif kind == 0x0C:  # DBPointer: a string, then 12 bytes
                position += 16 + _INT32.unpack_from(data, position)[0]
            else:
                return counted  # not a BSON type: the decoder's error
    except (ValueError, struct.error):  # a key or a length that runs off the end
        pass
    return counted


# The last two bytes of a little-endian double whose exponent bits are all set (NaN or an
# infinity). They can be found elsewhere too (in binary values), so a match only starts a walk.
_NON_FINITE = re.compile(rb"[\xf0-\xff][\x7f\xff]")


class BsonSerializer(Serializer):
    """BSON on the wire. A request over 16 MiB, or of more than ``max_values`` elements, is
    refused with 413 (1011), one nested deeper than the decoder's recursion limit, holding
    NaN or Infinity (as JSON refuses them; ``encode`` does not write them either), or not
    BSON at all, with 400 (1011)."""

    name = "bson"
    content_types: ClassVar[tuple[str, ...]] = ("application/bson",)
    safe_for_state = True

    def encode(self, obj: Any) -> bytes:
        try:
            data = bson.encode(obj, codec_options=CODEC_OPTIONS)
        except BSONError as error:  # InvalidDocument: a value BSON has no type for
            raise TypeError(f"cannot be sent as BSON: {error}") from None
        if len(data) > MAX_DOCUMENT_SIZE:
            raise ValueError(f"the answer is {len(data)} bytes of BSON; BSON documents are limited to 16 MiB")
        if _NON_FINITE.search(data) is not None and holds_non_finite(obj):
            raise ValueError("NaN and Infinity are not sent (JSON cannot carry them)")
        return data

    def decode(self, data: bytes) -> Any:
        if len(data) > MAX_DOCUMENT_SIZE:
            raise TotoException(
                ERROR_MALFORMED_REQUEST,
                f"Malformed request body: {len(data)} bytes of BSON; BSON documents are limited to 16 MiB "
                f"({MAX_DOCUMENT_SIZE} bytes)",
                status=413,
            )
        # An element takes two bytes at least (a type and an empty key): only a longer body can hold too many.
        if len(data) > 2 * self.max_values and bson_values(data, self.max_values) > self.max_values:
            raise too_many_values(self.max_values)
        value = self._decode(data)
        if _NON_FINITE.search(data) is not None and holds_non_finite(value):
            raise TotoException(ERROR_MALFORMED_REQUEST, "Malformed request body: NaN and Infinity are not numbers")
        return value

    def decode_state(self, data: bytes) -> Any:
        # What the deployment stored itself is read whole, however many values it holds.
        return self._decode(data)

    @staticmethod
    def _decode(data: bytes) -> Any:
        try:
            return bson.decode(data, codec_options=CODEC_OPTIONS)
        except BSONError as error:
            text = str(error)
            if "recursion" in text:
                reason = "the BSON document is nested too deeply"
            else:
                reason = f"not a valid BSON document ({text[:200]})"
            raise TotoException(ERROR_MALFORMED_REQUEST, f"Malformed request body: {reason}") from None
