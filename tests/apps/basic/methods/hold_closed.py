"""How many held connections have closed."""

from methods.hold import CLOSED


def invoke(handler, parameters):
    return CLOSED["count"]
