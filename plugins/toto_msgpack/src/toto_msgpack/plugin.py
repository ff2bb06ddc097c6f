"""The hooks toto-msgpack implements (entry point ``toto``: ``msgpack = "toto_msgpack.plugin"``)."""

from __future__ import annotations

from typing import Any

import toto
from toto.serializers import Serializer

from toto_msgpack.serializer import MsgpackSerializer


@toto.hookimpl
def toto_register_serializers() -> list[Serializer]:
    return [MsgpackSerializer()]


@toto.hookimpl
def toto_add_options(options: Any) -> None:
    options.define(
        "msgpack_timestamps",
        False,
        help="accept msgpack's timestamp extension (-1) as timezone-aware datetimes and send aware "
        "datetimes as it; when off, a request holding one is refused with 1011",
        type=bool,
    )
