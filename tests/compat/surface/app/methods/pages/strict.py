"""error_redirect without a default: an error it does not map is answered as usual."""

from toto.invocation import *


@error_redirect({404: "/missing.html"})
async def invoke(handler, params):
    if params.get("missing"):
        error = Exception("not here")
        error.status_code = 404
        raise error
    raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: what")
