"""Not a method: private names are never served or listed."""


def invoke(handler, parameters):
    return "private"
