"""The three request signing modes of PROTOCOL.md sections 4 and 9, both halves of each, on
both faces (HTTP requests and socket messages)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from toto.auth import Authenticator, ClientSession
from toto.exceptions import ERROR_INVALID_HMAC, ERROR_INVALID_RESPONSE_HMAC, ERROR_SIGNATURE_EXPIRED, TotoException
from toto.original import keysigning

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.handler import TotoHandler
    from toto.options import Options
    from toto.sessions import Session


def user_id_hmac(user_id: str | None, body: bytes) -> str:
    """base64(HMAC-SHA1(key=user_id as UTF-8, message=body)), padded (compat)."""
    key = (user_id or "").encode("utf-8")
    return base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode("ascii")


def decode_session_key(key: str) -> bytes:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))


#: What PROTOCOL.md section 4 allows as ``x-toto-nonce`` (and a socket call's ``"nonce"``).
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")


def new_nonce() -> str:
    """A fresh nonce: 128 random bits as 22 base64url characters."""
    return secrets.token_urlsafe(16)


def session_key_request_hmac(
    key: bytes, method: str, target: str, timestamp: str, body: bytes, nonce: str | None = None
) -> str:
    """The request signature; without ``nonce`` the older form that has no nonce line."""
    parts = [method.encode("ascii"), target.encode("latin-1"), timestamp.encode("ascii")]
    if nonce is not None:
        parts.append(nonce.encode("latin-1"))
    message = b"\n".join((*parts, body))
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def session_key_response_hmac(key: bytes, timestamp: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key, timestamp.encode("ascii") + b"\n" + body, hashlib.sha256).digest()).decode(
        "ascii"
    )


def session_key_message_hmac(key: bytes, timestamp: str, signed: bytes) -> str:
    """A socket call's signature: base64(HMAC-SHA256(key, timestamp + "\\n" + the frame without its hmac))."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"\n" + signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _invalid_hmac() -> TotoException:
    return TotoException(ERROR_INVALID_HMAC, "Invalid request HMAC")


def check_response_hmac(expected: str, given: str | None) -> None:
    """The client's check of an answer's signature: 1009 when it is missing or wrong (constant time)."""
    if not given:
        raise TotoException(ERROR_INVALID_RESPONSE_HMAC, "Missing response HMAC")
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().encode("latin-1", "replace")):
        raise TotoException(ERROR_INVALID_RESPONSE_HMAC, "Invalid response HMAC")


def utf16_low_bytes(text: str) -> bytes:
    """The low byte of each UTF-16 code unit of ``text``: what toto.js (jsSHA in its
    "ASCII" mode) hashes in place of UTF-8."""
    return text.encode("utf-16-le", "surrogatepass")[0::2]


def toto_js_hmac(user_id: str | None, body_text: str) -> str:
    """The user_id signature as toto.js computes it: key and message both as the low
    byte of each UTF-16 code unit (the same as ``user_id_hmac`` for ASCII text)."""
    key = utf16_low_bytes(user_id or "")
    return base64.b64encode(hmac.new(key, utf16_low_bytes(body_text), hashlib.sha1).digest()).decode("ascii")


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("latin-1", "replace"))


class UserIdSigning(Authenticator):
    """HMAC-SHA1 keyed with the user id over the exact body bytes (the original clients' scheme).

    Three forms of the original clients are accepted too; the key is the user id, which
    every answer of the session carries, so none of them lets anyone sign who could not
    sign already (SECURITY.md):

    - toto.js's signature over a non-ASCII body (see ``toto_js_hmac``);
    - a GET or HEAD without a body: the iOS client signs the JSON body it would have
      posted and sends the parameters in the query instead, so there is nothing the
      signature covers; the header must be there, its value is not checked;
    - with ``hmac_enabled=False``, requests are not checked at all (the 2017 iOS client
      signs nothing by default; the original served it with this option).
    """

    #: The key is the user id, public in every answer: a link may name a session, as the 2012 original allowed.
    unsigned_links = True

    def __init__(self) -> None:
        self.enabled = True
        self.keys = False

    def add_options(self, options: Options) -> None:
        options.define(
            "hmac_enabled",
            None,
            bool,
            "user_id mode: check x-toto-hmac on requests (the default; False serves clients that "
            "do not sign, like the 2017 iOS client's default; answers are signed either way); "
            "True also gives each session the 2016 original's signing key (toto.original.keysigning)",
        )

    def configure(self, options: Options) -> None:
        self.enabled = options.hmac_enabled is not False
        # Set explicitly true: the 2016 original's per-session key, served alongside.
        self.keys = options.hmac_enabled is True
        setattr(self, "uses_session_key", self.keys)  # noqa: B010 (a ClassVar of Authenticator)

    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        if not self.enabled:
            return
        request = handler.request
        given = request.headers.get("x-toto-hmac")
        if not given:
            raise _invalid_hmac()
        if self.keys and keysigning.verify_key_request(handler, session, body, given):
            handler._signed_by_key = True
            return
        if not body and request.method in ("GET", "HEAD"):
            return
        if _same(user_id_hmac(session.user_id, body), given):
            handler._toto_js = False
            return
        if not body.isascii() or not (session.user_id or "").isascii():
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid_hmac() from None
            if _same(toto_js_hmac(session.user_id, text), given):
                handler._toto_js = True
                return
        raise _invalid_hmac()

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        if handler._signed_by_key:
            keysigning.sign_key_response(handler, session, body)
            return
        user_id = session.user_id
        if handler._toto_js and user_id is not None and not user_id.isascii():
            # Answers are ASCII, so only the key's form differs: toto.js checks with its low bytes.
            digest = hmac.new(utf16_low_bytes(user_id), body, hashlib.sha1).digest()
            handler.set_header("x-toto-hmac", base64.b64encode(digest).decode("ascii"))
        else:
            handler.set_header("x-toto-hmac", user_id_hmac(user_id, body))

    def verify_message(
        self, call: Any, session: Session, message: Mapping[str, Any], signed: bytes, signature: str | None
    ) -> None:
        if not self.enabled:  # hmac_enabled=False checks nothing, as over HTTP
            return
        if signature is None or not _same(user_id_hmac(session.user_id, signed), signature):
            raise _invalid_hmac()

    def sign_request(self, session: ClientSession, method: str, target: str, body: bytes) -> dict[str, str]:
        return {"x-toto-hmac": user_id_hmac(session.get("user_id"), body)}

    def sign_message(self, session: ClientSession, message: Mapping[str, Any], signed: bytes) -> str | None:
        return user_id_hmac(session.get("user_id"), signed)

    def verify_response(self, session: ClientSession, headers: Mapping[str, str], body: bytes) -> None:
        check_response_hmac(user_id_hmac(session.get("user_id") or None, body), headers.get("x-toto-hmac"))


class SessionKeySigning(Authenticator):
    """HMAC-SHA256 with a per-session random key over method, target, timestamp, nonce and body.

    The nonce (``x-toto-nonce``) makes two identical calls two different requests; a
    request without one is checked in the older form without the nonce line.
    """

    expose_headers = ("x-toto-hmac", "x-toto-timestamp")
    uses_session_key = True

    def __init__(self, window: float = 300.0) -> None:
        self.window = window

    def add_options(self, options: Options) -> None:
        options.define("signature_window", self.window, float, "session_key mode: accepted clock skew in seconds")

    def configure(self, options: Options) -> None:
        self.window = float(options.signature_window)

    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> Awaitable[None]:
        """Check the timestamp and the signature now; the returned awaitable refuses a
        signature that any process or server of the deployment has seen (the storage's
        ``first_seen``, which outlives a restart for as long as the timestamp is valid)."""
        request = handler.request
        given = request.headers.get("x-toto-hmac")
        stamp = request.headers.get("x-toto-timestamp", "")
        nonce = request.headers.get("x-toto-nonce")
        if not given or not session.key:
            raise _invalid_hmac()
        if nonce is not None and not NONCE.match(nonce):
            raise TotoException(ERROR_INVALID_HMAC, "Malformed x-toto-nonce: 16 to 64 characters of A-Z a-z 0-9 _ -")
        now = time.time()
        try:
            sent_at = int(stamp)
        except ValueError:
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Missing or malformed x-toto-timestamp") from None
        if abs(now - sent_at) > self.window:
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Signature expired: check the client's clock")
        expected = session_key_request_hmac(
            decode_session_key(session.key), request.method, request.uri, stamp, body, nonce
        )
        given = given.strip()
        if not hmac.compare_digest(expected.encode("ascii"), given.encode("latin-1", "replace")):
            raise _invalid_hmac()
        # Remembered until its timestamp is refused anyway (plus a second of rounding).
        return _first_use(handler, given, sent_at + self.window - now + 1)

    def verify_message(
        self, call: Any, session: Session, message: Mapping[str, Any], signed: bytes, signature: str | None
    ) -> Awaitable[None]:
        """As ``verify_request``, with the timestamp a member of the signed message."""
        if signature is None or not session.key:
            raise _invalid_hmac()
        stamp = message.get("timestamp")
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Missing or malformed timestamp (integer unix seconds)")
        nonce = message.get("nonce")  # optional; inside the signed text, so only its form is checked here
        if nonce is not None and not (isinstance(nonce, str) and NONCE.match(nonce)):
            raise TotoException(ERROR_INVALID_HMAC, "Malformed nonce: 16 to 64 characters of A-Z a-z 0-9 _ -")
        now = time.time()
        if abs(now - stamp) > self.window:
            raise TotoException(ERROR_SIGNATURE_EXPIRED, "Signature expired: check the client's clock")
        if not _same(session_key_message_hmac(decode_session_key(session.key), str(stamp), signed), signature):
            raise _invalid_hmac()
        return _first_use(call, signature.strip(), stamp + self.window - now + 1)

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        if not session.key:
            return
        stamp = str(int(time.time()))
        handler.set_header("x-toto-timestamp", stamp)
        handler.set_header("x-toto-hmac", session_key_response_hmac(decode_session_key(session.key), stamp, body))

    def sign_request(self, session: ClientSession, method: str, target: str, body: bytes) -> dict[str, str]:
        key = session.get("key")
        if not key:
            return {}
        stamp = str(int(time.time()))
        nonce = new_nonce()
        signature = session_key_request_hmac(decode_session_key(key), method, target, stamp, body, nonce)
        return {"x-toto-timestamp": stamp, "x-toto-nonce": nonce, "x-toto-hmac": signature}

    def prepare_message(self, session: ClientSession, message: dict[str, Any]) -> dict[str, Any]:
        # The nonce makes two identical calls two messages: the server refuses a signature twice (1015).
        return dict(message, timestamp=int(time.time()), nonce=new_nonce()) if session.get("key") else message

    def sign_message(self, session: ClientSession, message: Mapping[str, Any], signed: bytes) -> str | None:
        key = session.get("key")
        if not key or "timestamp" not in message:
            return None
        return session_key_message_hmac(decode_session_key(key), str(message["timestamp"]), signed)

    def verify_response(self, session: ClientSession, headers: Mapping[str, str], body: bytes) -> None:
        key = session.get("key")
        if not key:
            raise TotoException(ERROR_INVALID_RESPONSE_HMAC, "No key to verify the response with")
        stamp = headers.get("x-toto-timestamp") or ""
        check_response_hmac(session_key_response_hmac(decode_session_key(key), stamp, body), headers.get("x-toto-hmac"))


async def _first_use(handler: Any, signature: str, ttl: float) -> None:
    if not await handler.server.storage.first_seen("sig:" + signature, ttl):
        raise TotoException(ERROR_SIGNATURE_EXPIRED, "Signature already used")


class NoSigning(Authenticator):
    """No signatures: the session id alone authenticates (only behind TLS).

    Answers still expose ``x-toto-hmac`` like every mode: PROTOCOL.md section 6 puts the header on
    every answer, and a browser client reading it finds it absent rather than hidden.
    """

    def verify_message(
        self, call: Any, session: Session, message: Mapping[str, Any], signed: bytes, signature: str | None
    ) -> None:
        """The session id alone, as over HTTP."""
