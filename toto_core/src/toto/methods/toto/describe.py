"""toto.describe: every method this server serves, with its docs, parameters and result schemas.

Served only when the server runs with the ``describe`` option on.
"""


def invoke(handler, parameters):
    return handler.server.description
