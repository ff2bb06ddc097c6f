"""The built-in memory storage and local bus pass the contract kit."""

import pytest
from toto.events import LocalBus
from toto.storage.memory import MemoryStorage
from toto.testing import StorageContract


class TestMemoryStorage(StorageContract):
    shared = False

    @pytest.fixture
    def storage_factory(self):
        return lambda: MemoryStorage()


def test_local_bus_delivers_in_process():
    import asyncio

    async def main():
        bus = LocalBus()
        got = []
        bus.subscribe(lambda name, payload, metadata: got.append((name, payload)))
        await bus.open()
        await bus.publish("n", b"\x00\x01", broadcast=False)
        await asyncio.sleep(0)
        await bus.close()
        return got

    assert asyncio.run(main()) == [("n", b"\x00\x01")]
