"""notes.list: the caller's notes."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    return {"notes": handler.session.get("notes", [])}
