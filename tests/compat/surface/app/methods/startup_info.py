import startup


def invoke(handler, params):
    return {"calls": startup.CALLS}
