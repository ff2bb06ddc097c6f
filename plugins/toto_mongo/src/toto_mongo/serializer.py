"""``application/bson``: requests and responses as BSON documents, on pymongo's ``bson`` package.

BSON carries what JSON cannot: binary values arrive as ``bytes`` and datetimes as
timezone-aware ``datetime`` objects (UTC, millisecond precision), and both go back
out the same way. Decoding never runs code (BSON's JavaScript type is an inert
string wrapper), so the serializer may also store session state.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, TypeRegistry
from bson.errors import BSONError
from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException
from toto.serializers import Serializer

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


class BsonSerializer(Serializer):
    """BSON on the wire. A request over 16 MiB is refused with 413 (1011), one nested
    deeper than the decoder's recursion limit, or not BSON at all, with 400 (1011)."""

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
        return data

    def decode(self, data: bytes) -> Any:
        if len(data) > MAX_DOCUMENT_SIZE:
            raise TotoException(
                ERROR_MALFORMED_REQUEST,
                f"Malformed request body: {len(data)} bytes of BSON; BSON documents are limited to 16 MiB "
                f"({MAX_DOCUMENT_SIZE} bytes)",
                status=413,
            )
        try:
            return bson.decode(data, codec_options=CODEC_OPTIONS)
        except BSONError as error:
            text = str(error)
            if "recursion" in text:
                reason = "the BSON document is nested too deeply"
            else:
                reason = f"not a valid BSON document ({text[:200]})"
            raise TotoException(ERROR_MALFORMED_REQUEST, f"Malformed request body: {reason}") from None
