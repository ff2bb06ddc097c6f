"""The storage options the server ended up with (for the tests of the original's options)."""


def invoke(handler, params):
    options = handler.server.options
    return {"database": options.database, "database_url": options.database_url}
