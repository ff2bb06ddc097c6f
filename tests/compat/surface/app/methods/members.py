"""JSONP with its own callback parameter, over a method that needs a session named by parameter."""

from toto.invocation import *


@jsonp("callback")
@authenticated_with_parameter
def invoke(handler, params):
    return {"user_id": handler.session.user_id}
