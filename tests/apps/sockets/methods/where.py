"""The HTTP method package's answer (sockets call socket_methods instead)."""


def invoke(handler, parameters):
    return {"package": "methods"}
