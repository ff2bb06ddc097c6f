"""Cookie sessions (``use_cookies``): the session id in a signed, HttpOnly, SameSite cookie.

For web apps whose pages should not hold the session id in script-readable storage.
The cookie's value is signed with ``cookie_secret`` by Tornado's own signed values
(``tornado.web.create_signed_value`` / ``decode_signed_value``), so a client cannot
name a session by editing it; the session's own expiry still decides whether it lives.
A request that sends ``x-toto-session-id`` uses the header, as the original did.

Credentialed CORS: a browser sends the cookie to another origin only when the answer
names that origin (never ``*``) and allows credentials. With ``use_cookies`` and
``allow_origin`` set to a list of origins, an answer echoes the request's ``Origin``
when it is in the list, with ``Access-Control-Allow-Credentials: true`` and
``Vary: Origin``; any other origin gets neither. ``allow_origin=*`` stays ``*`` and
allows no credentials (same-origin pages work; other origins get no cookie).

Cross-site requests: a request another site's page could have made the browser send
(``toto.origins``: ``AllowedOrigins.admits``) neither reads the cookie (it runs as if none
had come) nor is answered with one, so a link or a form of another site can neither act
as the visitor nor sign the visitor in as someone else. This class is the one place that
reads and writes the session cookie, and it asks that rule every time.
"""

from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING, Any

from tornado.web import create_signed_value, decode_signed_value

from toto.exceptions import ERROR_SERVER, PluginError, TotoException

if TYPE_CHECKING:
    from tornado.httputil import HTTPServerRequest

    from toto.handler import TotoHandler
    from toto.origins import AllowedOrigins
    from toto.sessions import Session

SESSION_COOKIE = "toto-session-id"


def cookie_secret(options: Any) -> bytes:
    secret = options.get("cookie_secret") or ""
    if not secret:
        raise TotoException(
            ERROR_SERVER, "cookie_secret is not set: start the server with --cookie_secret=<random text>"
        )
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign_cookie(secret: bytes, name: str, value: str | bytes) -> str:
    return create_signed_value(secret, name, value).decode("ascii")


def read_signed_cookie(secret: bytes, name: str, value: str | None, max_age_days: float = 31) -> bytes | None:
    if not value:
        return None
    try:
        return decode_signed_value(secret, name, value, max_age_days=max_age_days)
    except Exception:  # a malformed value is a cookie that does not verify
        return None


class CookieSessions:
    """The server's cookie-session settings (one per server, None without ``use_cookies``)."""

    def __init__(self, options: Any, origins: AllowedOrigins) -> None:
        if not options.cookie_secret:
            raise PluginError("use_cookies needs cookie_secret: start the server with --cookie_secret=<random text>")
        self.secret = cookie_secret(options)
        self.secure = bool(options.secure_cookies)
        self.domain = options.cookie_domain or None
        self.samesite = options.cookie_samesite
        self.max_age_days = math.ceil(max(float(options.session_ttl), float(options.anon_session_ttl)) / 86400) + 1
        #: ``allow_origin``, parsed once (``TotoServer.origins``): whose pages may use the cookie.
        self.origins = origins
        if self.samesite == "None" and not self.secure:
            raise PluginError("cookie_samesite=None needs secure_cookies=True (browsers refuse it otherwise)")

    def usable(self, request: HTTPServerRequest) -> bool:
        """Whether ``request`` may run with the cookie's session and be given a cookie
        (``AllowedOrigins.admits``: not a request another site's page could have sent)."""
        return self.origins.admits(request.headers)

    def named(self, request: HTTPServerRequest) -> str | None:
        """The session id the request's cookie names when its signature verifies, whoever sent it."""
        morsel = request.cookies.get(SESSION_COOKIE)
        value = read_signed_cookie(self.secret, SESSION_COOKIE, morsel.value if morsel else None, self.max_age_days)
        if value is None:
            return None
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None

    def session_id(self, handler: TotoHandler) -> str | None:
        """The session id the cookie names, None when the request may not use it (``usable``)."""
        request = handler.request
        return self.named(request) if self.usable(request) else None

    def set_session_cookie(self, handler: TotoHandler, session: Session) -> None:
        handler.set_cookie(
            SESSION_COOKIE,
            sign_cookie(self.secret, SESSION_COOKIE, session.session_id),
            domain=self.domain,
            expires=datetime.datetime.fromtimestamp(session.expires, datetime.timezone.utc),
            httponly=True,
            secure=self.secure,
            samesite=self.samesite,
        )

    def answer(self, handler: TotoHandler, session: Session | None, ended: bool) -> None:
        """Renew the cookie of the answer's session, or clear the one the request sent when
        ``ended`` (its session was signed out, expired or unknown); nothing for a request
        that may not use the cookie. An answer that failed before the session was read
        (an unknown method, a verb refused) leaves the cookie as it was."""
        if not self.usable(handler.request):
            return
        if session is not None:
            self.set_session_cookie(handler, session)
        elif ended and SESSION_COOKIE in handler.request.cookies:
            handler.clear_cookie(SESSION_COOKIE, domain=self.domain)

    def cors(self, handler: TotoHandler) -> None:
        """Answer an allowed origin by name, with credentials (see the module docstring)."""
        if not self.origins.listed:
            return
        handler.add_header("Vary", "Origin")
        origin = handler.request.headers.get("Origin")
        if self.origins.lists(origin):
            handler.set_header("Access-Control-Allow-Origin", origin)
            handler.set_header("Access-Control-Allow-Credentials", "true")
        else:
            handler.clear_header("Access-Control-Allow-Origin")
