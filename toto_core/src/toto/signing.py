"""The three request signing modes of PROTOCOL.md section 4."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from toto.auth import Authenticator
from toto.exceptions import ERROR_INVALID_HMAC, ERROR_SIGNATURE_EXPIRED, TotoException

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.handler import TotoHandler
    from toto.sessions import Session


def user_id_hmac(user_id: str | None, body: bytes) -> str:
    """base64(HMAC-SHA1(key=user_id as UTF-8, message=body)), padded (compat)."""
    key = (user_id or "").encode("utf-8")
    return base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode("ascii")


def decode_session_key(key: str) -> bytes:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))


def session_key_request_hmac(key: bytes, method: str, target: str, timestamp: str, body: bytes) -> str:
    message = b"\n".join((method.encode("ascii"), target.encode("latin-1"), timestamp.encode("ascii"), body))
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def session_key_response_hmac(key: bytes, timestamp: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key, timestamp.encode("ascii") + b"\n" + body, hashlib.sha256).digest()).decode(
        "ascii"
    )


def _invalid_hmac() -> TotoException:
    return TotoException(ERROR_INVALID_HMAC, "Invalid request HMAC")


class UserIdSigning(Authenticator):
    """HMAC-SHA1 keyed with the user id over the exact body bytes (the original clients' scheme)."""

    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        given = handler.request.headers.get("x-toto-hmac")
        if not given:
            raise _invalid_hmac()
        expected = user_id_hmac(session.user_id, body)
        if not hmac.compare_digest(expected.encode("ascii"), given.strip().encode("latin-1", "replace")):
            raise _invalid_hmac()

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        handler.set_header("x-toto-hmac", user_id_hmac(session.user_id, body))


class SessionKeySigning(Authenticator):
    """HMAC-SHA256 with a per-session random key over method, target, timestamp and body."""

    expose_headers = ("x-toto-hmac", "x-toto-timestamp")
    uses_session_key = True

    def __init__(self, window: float = 300.0) -> None:
        self.window = window

    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> Awaitable[None]:
        """Check the timestamp and the signature now; the returned awaitable refuses a
        signature that any process or server of the deployment has seen (the storage's
        ``first_seen``, which outlives a restart for as long as the timestamp is valid)."""
        request = handler.request
        given = request.headers.get("x-toto-hmac")
        stamp = request.headers.get("x-toto-timestamp", "")
        if not given or not session.key:
            raise _invalid_hmac()
        now = time.time()
        try:
            sent_at = int(stamp)
        except ValueError:
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Missing or malformed x-toto-timestamp") from None
        if abs(now - sent_at) > self.window:
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Signature expired: check the client's clock")
        expected = session_key_request_hmac(decode_session_key(session.key), request.method, request.uri, stamp, body)
        given = given.strip()
        if not hmac.compare_digest(expected.encode("ascii"), given.encode("latin-1", "replace")):
            raise _invalid_hmac()
        # Remembered until its timestamp is refused anyway (plus a second of rounding).
        return _first_use(handler, given, sent_at + self.window - now + 1)

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        if not session.key:
            return
        stamp = str(int(time.time()))
        handler.set_header("x-toto-timestamp", stamp)
        handler.set_header("x-toto-hmac", session_key_response_hmac(decode_session_key(session.key), stamp, body))


async def _first_use(handler: TotoHandler, signature: str, ttl: float) -> None:
    if not await handler.server.storage.first_seen("sig:" + signature, ttl):
        raise TotoException(ERROR_SIGNATURE_EXPIRED, "Signature already used")


class NoSigning(Authenticator):
    """No signatures: the session id alone authenticates (only behind TLS).

    Answers still expose ``x-toto-hmac`` like every mode: PROTOCOL.md section 6 puts the header on
    every answer, and a browser client reading it finds it absent rather than hidden.
    """
