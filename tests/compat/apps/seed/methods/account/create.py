from toto.invocation import *

from . import login


@requires("user_id", "password")
def invoke(handler, params):
    extra = {k: v for k, v in params.items() if k not in ("user_id", "password")}
    handler.db_connection.create_account(params["user_id"], params["password"], extra)
    return login.invoke(handler, params)
