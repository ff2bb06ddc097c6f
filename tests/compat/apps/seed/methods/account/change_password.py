from toto.invocation import *


@authenticated
@requires("password", "new_password")
def invoke(handler, params):
    handler.db_connection.change_password(handler.session.user_id, params["password"], params["new_password"])
    return {"changed": True}
