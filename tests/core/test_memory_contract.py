"""The core's own plugin passes the contract kit: the memory storage (one process), the local bus
and the JSON serializer."""

import asyncio

import pytest
from toto.events import LocalBus
from toto.serializers import JsonSerializer
from toto.storage.memory import MemoryStorage
from toto.testing import Backend, DeploymentContract, EventBusContract, SerializerContract, StorageContract

MEMORY = Backend(
    storage=lambda namespace, address: MemoryStorage(),
    server_options=lambda namespace, address: {"database": "memory"},
    shared=False,
)


class TestMemoryStorage(StorageContract):
    shared = False

    @pytest.fixture
    def storage_factory(self):
        return lambda: MemoryStorage()


class TestMemoryDeployment(DeploymentContract):
    @pytest.fixture
    def backend(self):
        return MEMORY


class TestJsonSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self):
        return JsonSerializer()


class TestLocalBus(EventBusContract):
    """One process's bus: the contract on one instance."""

    shared = False

    @pytest.fixture
    def bus_factory(self):
        return LocalBus


def test_local_bus_delivers_in_process():
    async def main():
        bus = LocalBus()
        got = []
        bus.subscribe(lambda name, payload, *_: got.append((name, payload)))
        await bus.open()
        await bus.publish("n", b"\x00\x01", broadcast=False)
        await asyncio.sleep(0)
        await bus.close()
        return got

    assert asyncio.run(main()) == [("n", b"\x00\x01")]
