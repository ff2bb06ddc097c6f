"""The 2016 original's ``hmac_enabled=True``: a random ``key`` per session, served in
``user_id`` mode alongside the 2012 user-id signatures (``toto.signing.UserIdSigning``).

When ``hmac_enabled`` is set to true, ``account.create`` and ``account.login`` answer the
session's ``key`` as the 2016 original did, and a request may be signed either way:

- 2016: ``x-toto-hmac`` = base64(HMAC-SHA1(key, method + uri + body)); its answer is
  signed base64(HMAC-SHA1(key, session_id + body));
- 2012 (and toto.js, iOS): HMAC-SHA1 keyed with the user id over the body; answered in
  kind.

The request's form is found by checking the key's signature first; the answer is signed in
the form the request used. ``TotoHandler.set_hmac_handler`` and
``set_response_hmac_handler`` (the original's class-level overrides) replace the two
key-signature functions below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toto.exceptions import ERROR_INVALID_HMAC, TotoException

if TYPE_CHECKING:
    from toto.handler import TotoHandler
    from toto.sessions import Session

#: ``fn(handler, session, request, headers)``: the application's own check of a key-signed
#: request (``TotoHandler.set_hmac_handler``); it raises ``TotoException`` to refuse.
verify_handler: Callable[..., Any] | None = None
#: ``fn(handler, session, response_body)`` -> the answer's signature as text
#: (``TotoHandler.set_response_hmac_handler``).
response_handler: Callable[..., str] | None = None


def key_hmac(key: str, message: bytes) -> str:
    """base64(HMAC-SHA1(key as UTF-8, message)): both directions of the 2016 scheme."""
    return base64.b64encode(hmac.new(key.encode("utf-8"), message, hashlib.sha1).digest()).decode("ascii")


def request_message(method: str, uri: str, body: bytes) -> bytes:
    """What a 2016 client signs: HTTP method, request URI (path and query) and body."""
    return method.encode("ascii") + uri.encode("latin-1") + body


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("latin-1", "replace"))


def verify_key_request(handler: TotoHandler, session: Session, body: bytes, given: str) -> bool:
    """Whether the request is signed with the session's key (the 2016 form). With an
    application check (``set_hmac_handler``) that check decides: it raises to refuse."""
    if verify_handler is not None:
        try:
            verify_handler(handler, session, handler.request, handler.request.headers)
        except TotoException:
            raise
        except Exception:
            raise TotoException(ERROR_INVALID_HMAC, "Invalid HMAC") from None
        return True
    key = session.key
    if not key:
        return False
    request = handler.request
    return _same(key_hmac(key, request_message(request.method or "POST", request.uri or "/", body)), given)


def sign_key_response(handler: TotoHandler, session: Session, body: bytes) -> None:
    """Sign an answer to a key-signed request: HMAC-SHA1(key, session_id + body)."""
    if response_handler is not None:
        signature = response_handler(handler, session, body)
    elif session.key:
        signature = key_hmac(session.key, session.session_id.encode("utf-8") + body)
    else:
        return
    handler.set_header("x-toto-hmac", signature)
