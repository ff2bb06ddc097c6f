"""Runs with or without a valid session."""

from toto.invocation import optionally_authenticated


@optionally_authenticated
def invoke(handler, parameters):
    return {"user_id": handler.session.user_id if handler.session else None}
