"""notes.add: keep a note in the caller's session state (signed-in users only)."""

from toto.invocation import authenticated, requires


@authenticated
@requires("text")
def invoke(handler, parameters):
    notes = handler.session.get("notes", [])
    notes.append(str(parameters["text"])[:1000])
    handler.session["notes"] = notes
    handler.session.save_state()
    return {"count": len(notes)}
