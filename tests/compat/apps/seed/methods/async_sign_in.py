"""Async code awaits the same create_session sync code calls directly."""


async def invoke(handler, params):
    session = await handler.create_session(params["user_id"], params["password"])
    return {"user_id": session.user_id, "is_handlers": session is handler.session}
