"""Sets keys of the session state from the parameters and saves it."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    for key, value in parameters.items():
        handler.session[key] = value
    handler.session.save_state()
    return sorted(parameters)
