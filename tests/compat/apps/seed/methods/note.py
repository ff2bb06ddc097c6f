"""Signed-in: keeps a text in the session and answers it (non-ASCII signing checks)."""

from toto.invocation import *


@authenticated
def invoke(handler, params):
    handler.session["note"] = params.get("text")
    handler.session.save()
    return {"note": handler.session["note"], "user_id": handler.session.user_id}
