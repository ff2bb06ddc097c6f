"""Decoding bombs: request bodies a few bytes per value that decode to millions of values,
one builder per serializer and shape, each a body of at most ``size`` bytes."""

from __future__ import annotations

import struct
from collections.abc import Callable

import msgpack

#: A builder: the body's size in bytes -> (content type, body).
Bomb = Callable[[int], tuple[str, bytes]]


def _msgpack(unit: bytes) -> Bomb:
    def build(size: int) -> tuple[str, bytes]:
        head = msgpack.packb({"method": "echo", "parameters": {"x": None}})[:-1]  # the map without its nil
        count = (size - len(head) - 5) // len(unit)
        return "application/msgpack", head + b"\xdd" + struct.pack(">I", count) + unit * count

    return build


def _msgpack_nested(size: int) -> tuple[str, bytes]:
    return "application/msgpack", b"\x91" * (size - 1) + b"\xc0"


def _msgpack_declared(size: int) -> tuple[str, bytes]:
    # An array that says it holds four billion values, and a map and a string that say as much.
    return (
        "application/msgpack",
        b"\x92\xdd\xff\xff\xff\xff\xdf\xff\xff\xff\xff" + b"\xdb\xff\xff\xff\xff" + b"\x00" * 64,
    )


def _json(unit: bytes) -> Bomb:
    def build(size: int) -> tuple[str, bytes]:
        head, tail = b'{"method":"echo","parameters":{"x":[', b"]}}"
        count = (size - len(head) - len(tail)) // (len(unit) + 1)
        return "application/json", head + b",".join([unit] * count) + tail

    return build


def _json_nested(size: int) -> tuple[str, bytes]:
    return "application/json", b"[" * (size // 2) + b"]" * (size // 2)


def _bson(element: bytes) -> Bomb:
    """A document {"method": "echo", "parameters": {"x": [<element>, <element>, ...]}} where each
    array entry is ``element`` (type byte, empty key, value): BSON's array keys are not read back."""

    def build(size: int) -> tuple[str, bytes]:
        count = (size - 200) // len(element)
        array = element * count
        array_doc = struct.pack("<i", len(array) + 5) + array + b"\x00"
        x = b"\x04x\x00" + array_doc
        parameters = struct.pack("<i", len(x) + 5) + x + b"\x00"
        method = b"\x02method\x00" + struct.pack("<i", 5) + b"echo\x00"
        body = method + b"\x03parameters\x00" + parameters
        return "application/bson", struct.pack("<i", len(body) + 5) + body + b"\x00"

    return build


def _bson_nested(size: int) -> tuple[str, bytes]:
    depth = min(size // 8, 100_000)
    doc = b"\x05\x00\x00\x00\x00"
    for _ in range(depth):
        doc = struct.pack("<i", len(doc) + 8) + b"\x03a\x00" + doc + b"\x00"
    return "application/bson", doc


BOMBS: dict[str, Bomb] = {
    "msgpack empty maps": _msgpack(b"\x80"),
    "msgpack empty arrays": _msgpack(b"\x90"),
    "msgpack short strings": _msgpack(b"\xa2ab"),
    "msgpack nested": _msgpack_nested,
    "msgpack declared lengths": _msgpack_declared,
    "json empty objects": _json(b"{}"),
    "json empty arrays": _json(b"[]"),
    "json short strings": _json(b'"ab"'),
    "json small numbers": _json(b"7"),
    "json nested": _json_nested,
    "bson empty documents": _bson(b"\x03\x00\x05\x00\x00\x00\x00"),
    "bson empty arrays": _bson(b"\x04\x00\x05\x00\x00\x00\x00"),
    "bson nulls": _bson(b"\x0a\x00"),
    "bson short strings": _bson(b"\x02\x00\x03\x00\x00\x00ab\x00"),
    "bson nested": _bson_nested,
}
