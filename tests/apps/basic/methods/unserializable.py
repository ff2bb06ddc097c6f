"""Returns a value JSON cannot carry."""


def invoke(handler, parameters):
    return {"value": object()}
