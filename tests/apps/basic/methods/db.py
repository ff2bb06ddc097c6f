"""Describes the native storage handle (handler.connection.db)."""


def invoke(handler, parameters):
    db = handler.connection.db
    return {"type": type(db).__name__, "value": db if isinstance(db, dict) else None}
