"""The startup_function: records what the server handed it."""

CALLS = []


def setup(db_connection, application):
    CALLS.append({"db": type(db_connection.db).__name__, "application": type(application).__name__})
