"""The contract kit: the tests every Storage and EventBus must pass.

A backend's test module subclasses a contract class and supplies one fixture that
returns a factory of fresh, unopened instances::

    import pytest
    from toto.testing import StorageContract
    from my_plugin import MyStorage

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage_factory(self):
            return lambda: MyStorage(url="...", prefix=unique_prefix())

Each test runs in its own event loop (no pytest plugin needed) and opens and
closes the instances it makes. ``toto.testing.server`` starts a real server
process for HTTP tests.
"""

from toto.testing.contract import EventBusContract, StorageContract

__all__ = ["EventBusContract", "StorageContract"]
