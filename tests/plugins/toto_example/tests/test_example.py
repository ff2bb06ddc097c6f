import pytest
from toto.testing import Backend, DeploymentContract, StorageContract
from toto_example.plugin import ExampleStorage


class Options:
    example_greeting = "hi"


class TestExampleStorage(StorageContract):
    shared = False  # each instance keeps its data in its own process

    @pytest.fixture
    def storage_factory(self):
        return lambda: ExampleStorage(Options())


class TestExampleDeployment(DeploymentContract):
    """Real servers on --database=example over HTTP."""

    @pytest.fixture
    def backend(self):
        return Backend(
            storage=lambda namespace, address: ExampleStorage(Options()),
            server_options=lambda namespace, address: {"database": "example"},
            shared=False,
        )
