from toto import hookimpl
from toto.storage.memory import MemoryStorage


@hookimpl
def toto_register_storage():
    return {"example": MemoryStorage}


@hookimpl
def toto_default_storage():
    return "example"
