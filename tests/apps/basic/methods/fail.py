"""Raises an unexpected exception (the server must answer 1000 without a traceback)."""


def invoke(handler, parameters):
    raise ValueError("secret internal detail")
