"""Answers the caller's user id (signed-in callers only)."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    return {"user_id": handler.session.user_id}
