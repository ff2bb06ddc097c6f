"""MsgpackSerializer passes the serializer contract, configured as a server with the default limits."""

import pytest
from toto.testing import SerializerContract
from toto_msgpack import MsgpackSerializer


class TestMsgpackSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> MsgpackSerializer:
        return MsgpackSerializer(max_size=10 * 1024 * 1024)
