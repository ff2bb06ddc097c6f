"""Increments session["count"] and saves the state (a read-modify-write that must not lose updates)."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    session = handler.session
    session["count"] = session.get("count", 0) + 1
    session.save_state()
    return session["count"]
