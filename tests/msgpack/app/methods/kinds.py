"""Answers its parameters together with the Python type name of each value."""


def invoke(handler, parameters):
    return {"echo": parameters, "kinds": {k: type(v).__name__ for k, v in parameters.items()}}
