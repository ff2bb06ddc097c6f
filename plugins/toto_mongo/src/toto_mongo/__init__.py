"""MongoDB storage (``--database=mongodb``) and the ``application/bson`` serializer for Toto."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toto_mongo.serializer import BsonSerializer

if TYPE_CHECKING:
    from toto_mongo.storage import MongoStorage

__version__ = "0.1.0"

__all__ = ["BsonSerializer", "MongoStorage", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Toto loads this package in every server (see plugin.py).
    if name == "MongoStorage":
        from toto_mongo.storage import MongoStorage

        return MongoStorage
    raise AttributeError(f"module 'toto_mongo' has no attribute {name!r}")
