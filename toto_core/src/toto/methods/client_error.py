"""client_error: writes an error a browser reported (``toto.js``'s ``registerErrorHandler``) to
the server log. Not served by itself: an application serves it by re-exporting it, as the
original's templates did (``import toto.methods.client_error as client_error`` in its
``methods/__init__.py``)."""

import logging

from toto.invocation import requires

log = logging.getLogger("toto.client_error")

#: Longest report written to the log; longer ones are cut, so a client cannot flood it.
MAX_REPORT = 4096


@requires("client_error", "client_type")
def invoke(handler, parameters):
    if parameters["client_type"] != "browser_js":
        return {"logged": False}
    # repr() escapes line breaks and control characters: one report is one log line.
    report = repr(str(parameters["client_error"])[:MAX_REPORT])
    log.error("browser error from %s: %s", handler.request.remote_ip, report)
    return {"logged": True}
