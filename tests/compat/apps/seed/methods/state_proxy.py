"""Exercises the session's dict proxy the way the original's methods used it."""

from toto.invocation import *


@authenticated
def invoke(handler, params):
    session = handler.session
    step = params.get("step")
    if step == "write":
        missing = session["never_set"]
        del session["never_set"]  # deleting a missing key does nothing
        session["zero"] = 0
        session["empty"] = ""
        session["items"] = []
        session["name"] = params["name"]
        session.save()
        return {"missing": missing, "has_name": "name" in session, "has_other": "other" in session}
    if step == "read":
        return {
            "zero": session["zero"],
            "empty": session["empty"],
            "items": session["items"],
            "name": session["name"],
            "keys": sorted(session),
            "len": len(session),
            "get": session.get("absent", "fallback"),
        }
    if step == "replace":
        session.state = {"replaced": True}
        session.save_state()
        return {"keys": sorted(session.state)}
    if step == "drop":
        del session["replaced"]
        session.save()
        return {"keys": sorted(session)}
    raise TotoException(ERROR_MISSING_PARAMS, "step?")
