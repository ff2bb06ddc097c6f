"""A counter kept in the session, anonymous unless the caller signed in."""

from toto.invocation import *


@anonymous_session
def invoke(handler, params):
    handler.session["visits"] = (handler.session.get("visits") or 0) + 1
    handler.session.save_state()
    return {"visits": handler.session["visits"], "user_id": handler.session.user_id}
