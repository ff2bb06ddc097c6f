"""MongoDB storage (``--database=mongodb``) and the ``application/bson`` serializer for Toto."""

from toto_mongo.serializer import BsonSerializer
from toto_mongo.storage import MongoStorage

__version__ = "0.1.0"

__all__ = ["BsonSerializer", "MongoStorage", "__version__"]
