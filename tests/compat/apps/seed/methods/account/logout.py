from toto.invocation import *


@authenticated
def invoke(handler, params):
    handler.db_connection.remove_session(handler.session.session_id)
    return {"authenticated": False}
