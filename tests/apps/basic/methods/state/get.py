"""Answers the whole session state, or the keys named by parameters["keys"]."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    state = handler.session.state
    keys = parameters.get("keys")
    return {k: state.get(k) for k in keys} if keys else dict(state)
