"""A method module that imports os: `with_os.os` must never resolve to it."""

import os


def invoke(handler, parameters):
    return {"pid_is_int": isinstance(os.getpid(), int)}
