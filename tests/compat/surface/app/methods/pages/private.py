from toto.invocation import *


@error_redirect({"1004": "/login.html"}, "/error.html")
@authenticated
def invoke(handler, params):
    if params.get("fail"):
        raise TotoException(4242, "failed")
    return {"user_id": handler.session.user_id}
