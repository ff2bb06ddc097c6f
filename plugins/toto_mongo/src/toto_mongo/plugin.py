"""The hooks toto-mongo implements (entry point ``toto``: ``mongo = "toto_mongo.plugin"``).

Every Toto server loads this module at start-up, so it imports pymongo's client only
when a server really stores in MongoDB (the BSON serializer needs just ``bson``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import toto
from toto.serializers import Serializer

from toto_mongo.defaults import DEFAULT_PREFIX, DEFAULT_TIMEOUT
from toto_mongo.serializer import BsonSerializer

if TYPE_CHECKING:
    from toto_mongo.storage import MongoStorage


def mongo_storage(options: Any) -> MongoStorage:
    from toto_mongo.storage import MongoStorage

    return MongoStorage.from_options(options)


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], MongoStorage]]:
    return {"mongodb": mongo_storage}


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
