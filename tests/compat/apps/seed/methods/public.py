"""Public: answers who called, when the named session exists and verifies."""


def invoke(handler, params):
    return {"user_id": handler.session.user_id if handler.session else None, "echo": params.get("text")}
