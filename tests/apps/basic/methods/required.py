"""Needs parameters a and b."""

from toto.invocation import requires


@requires("a", "b")
def invoke(handler, parameters):
    return parameters["a"] + parameters["b"]
