"""The signed-in user's notes, oldest first."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters) -> list:
    return handler.session.state.get("notes") or []
