"""A signed session call: loads the session, checks the HMAC, answers the caller's user id."""

from typing import Any

from toto.invocation import authenticated


@authenticated
def invoke(handler: Any, parameters: Any) -> Any:
    return {"user_id": handler.session.user_id}
