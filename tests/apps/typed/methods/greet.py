"""Needs a name (checked by @requires, not by types)."""

from toto.invocation import requires


@requires("name")
def invoke(handler, parameters):
    return "hello " + str(parameters["name"])
