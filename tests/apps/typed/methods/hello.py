"""Greets whoever calls: no type hints, so no checks."""


def invoke(handler, parameters):
    return {"hello": parameters.get("name", "world")}
