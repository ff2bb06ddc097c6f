"""Opens an anonymous session."""


async def invoke(handler, parameters):
    session = await handler.create_session(None)
    return {"anonymous": session.user_id is None}
