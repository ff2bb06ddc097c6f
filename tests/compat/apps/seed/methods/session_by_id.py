"""Uses the session named by a parameter (as @authenticated_with_parameter does)."""


async def invoke(handler, params):
    session = await handler.retrieve_session(params["session_id"])
    return {"user_id": session.user_id if session else None, "same": handler.session is session}
