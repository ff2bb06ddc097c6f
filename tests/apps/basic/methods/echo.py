"""Answers its parameters."""


def invoke(handler, parameters):
    return parameters
