from toto.invocation import *


@authenticated
def invoke(handler, parameters):
    info = handler.error_info(RuntimeError("shown as 1000"))
    return {"user_id": handler.current_user, "error_info": info}
