"""The RequestHandler surface methods written for the original use."""

import uuid


def invoke(handler, params):
    what = params.get("what") if isinstance(params, dict) else None
    if isinstance(what, list):  # a urlencoded form gives each field as a list, as the original did
        what = what[-1]
    if what == "arguments":
        return {
            "one": handler.get_argument("one"),
            "many": handler.get_arguments("many"),
            "default": handler.get_argument("absent", "dflt"),
        }
    if what == "missing_argument":
        return handler.get_argument("absent")
    if what == "set_cookies":
        handler.set_cookie("plain", "hello", httponly=True)
        handler.set_secure_cookie("signed", "secret-value")
        return {"set": True}
    if what == "read_cookies":
        signed = handler.get_secure_cookie("signed")
        return {"plain": handler.get_cookie("plain"), "signed": signed.decode() if signed else None}
    if what == "clear_cookie":
        handler.clear_cookie("plain")
        return {"cleared": True}
    if what == "info":
        return {
            "transaction_id": str(handler.transaction_id),
            "same_id": handler.transaction_id == handler.transaction_id,
            "is_uuid": isinstance(handler.transaction_id, uuid.UUID),
            "response_type": handler.response_type,
            "debug": handler.settings["debug"],
            "db": type(handler.db).__name__,
            "path": handler.request.path,
        }
    if what == "raw":
        handler.response_type = "text/csv"
        handler.respond_raw("a,b\n1,2\n", handler.response_type)
        return None
    if what == "redirect":
        handler.redirect("/elsewhere?from=surface")
        return None
    if what == "redirect_status":
        handler.redirect("/elsewhere", status=params["status"])
        return None
    return {"what": what}
