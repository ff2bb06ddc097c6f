from toto.invocation import *


@requires("user_id", "password")
async def invoke(handler, params):
    return {"valid": await handler.db_connection.verify_password(params["user_id"], params["password"])}
