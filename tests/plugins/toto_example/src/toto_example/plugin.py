"""A third-party storage: in-memory, but it says who it is through its native handle."""

from toto import hookimpl
from toto.storage.memory import MemoryStorage


class ExampleStorage(MemoryStorage):
    def __init__(self, options):
        super().__init__(options)
        self.db = {"backend": "toto-example", "greeting": options.example_greeting}


@hookimpl
def toto_register_storage():
    return {"example": ExampleStorage}


@hookimpl
def toto_add_options(options):
    options.define("example_greeting", "hi", str, "what the example storage says", group="toto-example")
