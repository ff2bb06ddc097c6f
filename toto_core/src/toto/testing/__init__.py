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
closes the instances it makes. A backend's own extra tests can do the same with
``run_storages(body, *stores)``, and build sessions with ``session_record(...)``.
``toto.testing.server`` starts a real server process for HTTP tests.
"""

from toto.testing.contract import EventBusContract, StorageContract, run_storages, session_record
from toto.testing.guards import GuardContract

__all__ = ["EventBusContract", "GuardContract", "StorageContract", "run_storages", "session_record"]
