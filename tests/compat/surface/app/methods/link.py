from toto.invocation import *


@authenticated_with_parameter
def invoke(handler, params):
    return {"user_id": handler.session.user_id, "parameters": params}
