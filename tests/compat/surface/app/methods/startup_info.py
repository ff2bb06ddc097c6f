import startup


def invoke(handler, params):
    return {"calls": startup.CALLS, "db": type(handler.connection.db).__name__}
