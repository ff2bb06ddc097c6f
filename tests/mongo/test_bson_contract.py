"""BsonSerializer passes the serializer contract."""

import pytest
from toto.testing import SerializerContract
from toto_mongo import BsonSerializer


class TestBsonSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> BsonSerializer:
        return BsonSerializer()
