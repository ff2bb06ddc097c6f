from toto.invocation import *


@requires("user_id")
async def invoke(handler, params):
    # A value the method needs is awaited (the original's call blocked instead).
    return {"password": await handler.db_connection.generate_password(params["user_id"])}
