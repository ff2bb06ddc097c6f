"""A custom sign-in flow (of a test app only: it trusts the caller): opens a session for parameters["user_id"]."""


async def invoke(handler, parameters):
    session = await handler.create_session(parameters["user_id"])
    return {"user_id": session.user_id}
