"""A public counter kept in an anonymous session made on the first visit."""


def invoke(handler, params):
    if not handler.session:
        handler.create_session()
    handler.session["visits"] = (handler.session["visits"] or 0) + 1
    handler.session.save()
    return {"visits": handler.session["visits"], "session_id": handler.session.session_id}
