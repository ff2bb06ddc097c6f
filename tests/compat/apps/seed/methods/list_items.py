"""Answers its query parameters (the iOS client's GET calls)."""


def invoke(handler, params):
    return {"params": params, "user_id": handler.session.user_id if handler.session else None}
