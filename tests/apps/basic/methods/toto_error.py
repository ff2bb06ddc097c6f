"""Raises an application error with a structured value."""

from toto.exceptions import TotoException


def invoke(handler, parameters):
    raise TotoException(4242, {"reason": "custom", "echo": parameters})
