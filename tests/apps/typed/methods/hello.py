"""Greets whoever calls: no type hints, so no checks (it reads what it is given itself)."""


def invoke(handler, parameters):
    name = parameters.get("name", "world") if isinstance(parameters, dict) else "world"
    return {"hello": name}
