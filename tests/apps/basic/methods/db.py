"""Reports the type of the native storage handle."""


def invoke(handler, parameters):
    return {"type": type(handler.connection.db).__name__}
