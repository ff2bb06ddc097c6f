"""Never answers; counts connection closes through on_connection_close."""

from toto.invocation import asynchronous

CLOSED = {"count": 0}


@asynchronous
def invoke(handler, parameters):
    return None


def on_connection_close(handler):
    CLOSED["count"] += 1
