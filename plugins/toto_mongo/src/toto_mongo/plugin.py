"""The hooks toto-mongo implements (entry point ``toto``: ``mongo = "toto_mongo.plugin"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import toto
from toto.serializers import Serializer

from toto_mongo.serializer import BsonSerializer
from toto_mongo.storage import DEFAULT_PREFIX, DEFAULT_TIMEOUT, MongoStorage


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], MongoStorage]]:
    return {"mongodb": MongoStorage.from_options}


@toto.hookimpl
def toto_register_serializers() -> list[Serializer]:
    return [BsonSerializer()]


@toto.hookimpl
def toto_add_options(options: Any) -> None:
    options.define(
        "mongo_collection_prefix",
        DEFAULT_PREFIX,
        help="prefix of the accounts and sessions collections, so several apps can share one database",
        type=str,
        group="toto-mongo",
    )
    options.define(
        "mongo_timeout",
        DEFAULT_TIMEOUT,
        help="seconds to wait for MongoDB (server selection, connect, each operation) before a request fails with 1013",
        type=float,
        group="toto-mongo",
    )
