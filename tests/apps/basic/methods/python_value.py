"""Answers a Python value JSON has no literal for, chosen by ``parameters["kind"]``."""

import datetime
import enum
import uuid

from toto import serializers


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


VALUES = {
    "set": lambda: {"ids": {7}},
    "frozenset": lambda: frozenset({"a"}),
    "uuid": lambda: uuid.UUID(int=0x1234),
    "enum": lambda: [Colour.RED, Level.HIGH],
    "datetime": lambda: datetime.datetime(2026, 1, 2, 3, 4, 5),
    "bytes": lambda: b"raw",
    "codec": lambda: serializers.JSON_CODEC,
}


def invoke(handler, parameters):
    return VALUES[parameters["kind"]]()
