"""The parts of Tornado's ``RequestHandler`` and of the original ``TotoHandler`` that method
code written for the original uses, on Toto's own (faster) handler.

Nothing here runs unless a method calls it, so the request path pays nothing for it.
"""

from __future__ import annotations

import asyncio
import datetime
import http.cookies
import time
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from toto.calls import error_for
from toto.cookies import cookie_secret, read_signed_cookie, sign_cookie
from toto.exceptions import ERROR_MISSING_PARAMS, TotoException
from toto.original import hooks, keysigning

# The request path takes DBConnection and Pending from here too: this module is its one seam.
from toto.original.dbconnection import DBConnection as DBConnection
from toto.original.dbconnection import Pending as Pending

if TYPE_CHECKING:
    from tornado import httputil

    from toto.handler import TotoHandler
    from toto.server import TotoServer
    from toto.sessions import Session

NO_DEFAULT: Any = object()


class SeedHandler:
    """Mixed into ``TotoHandler``: ``get_argument(s)``, cookies and signed cookies,
    ``redirect``, ``settings``, ``db_connection``, ``db``, ``retrieve_session``,
    ``response_type`` and ``transaction_id``."""

    if TYPE_CHECKING:
        request: httputil.HTTPServerRequest
        server: TotoServer
        session: Session | None
        _form_arguments: dict[str, list[bytes]] | None
        _cookie_allowed: bool

        def set_header(self, name: str, value: Any) -> None: ...
        def add_header(self, name: str, value: Any) -> None: ...
        def set_status(self, status_code: int, reason: str | None = None) -> None: ...
        def respond_raw(self, body: bytes | str, content_type: str, finish: bool = True) -> None: ...

    _db_connection: DBConnection | None = None
    _transaction_id: uuid.UUID | None = None
    _raw_type: str | None = None
    _response_type: str | None = None
    #: The request was signed with its session's 2016 key (``toto.original.keysigning``): so is the answer.
    _signed_by_key = False

    # -- arguments ------------------------------------------------------------------------
    def get_arguments(self, name: str, strip: bool = True) -> list[str]:
        """Every value of query (or form) argument ``name``, as text."""
        values = list(self.request.query_arguments.get(name, ()))
        if self._form_arguments:
            values.extend(self._form_arguments.get(name, ()))
        texts = []
        for value in values:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise TotoException(ERROR_MISSING_PARAMS, f"Argument {name!r} is not UTF-8 text") from None
            texts.append(text.strip() if strip else text)
        return texts

    def get_argument(self, name: str, default: Any = NO_DEFAULT, strip: bool = True) -> Any:
        """The last value of argument ``name``; without a ``default``, missing is 1003."""
        values = self.get_arguments(name, strip)
        if values:
            return values[-1]
        if default is NO_DEFAULT:
            raise TotoException(ERROR_MISSING_PARAMS, f"Missing argument {name}")
        return default

    # -- cookies --------------------------------------------------------------------------
    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        morsel = self.request.cookies.get(name)
        return morsel.value if morsel is not None else default

    def set_cookie(
        self,
        name: str,
        value: str | bytes,
        domain: str | None = None,
        expires: float | datetime.datetime | None = None,
        path: str = "/",
        expires_days: float | None = None,
        *,
        max_age: int | None = None,
        httponly: bool = False,
        secure: bool = False,
        samesite: str | None = None,
    ) -> None:
        """Add a ``Set-Cookie`` header (Tornado's signature)."""
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            cookie[name] = text
        except http.cookies.CookieError:
            raise ValueError(f"Invalid cookie name {name!r}") from None
        morsel = cookie[name]
        if domain:
            morsel["domain"] = domain
        if expires_days is not None and expires is None:
            expires = time.time() + expires_days * 86400
        if isinstance(expires, datetime.datetime):
            expires = expires.timestamp()
        if expires is not None:
            morsel["expires"] = formatdate(expires, usegmt=True)
        if path:
            morsel["path"] = path
        if max_age is not None:
            morsel["max-age"] = str(max_age)
        if httponly:
            morsel["httponly"] = True
        if secure:
            morsel["secure"] = True
        if samesite:
            morsel["samesite"] = samesite
        self.add_header("Set-Cookie", morsel.OutputString())

    def clear_cookie(self, name: str, path: str = "/", domain: str | None = None) -> None:
        """Tell the browser to forget cookie ``name``."""
        self.set_cookie(name, "", path=path, domain=domain, expires=0.0, max_age=0)

    def set_secure_cookie(self, name: str, value: str | bytes, expires_days: float | None = 30, **kwargs: Any) -> None:
        """A cookie signed with ``cookie_secret`` (Tornado's signed values), HttpOnly unless told."""
        kwargs.setdefault("httponly", True)
        secret = cookie_secret(self.server.options)
        self.set_cookie(name, sign_cookie(secret, name, value), expires_days=expires_days, **kwargs)

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = 31) -> bytes | None:
        """The value of a cookie made by ``set_secure_cookie``; None when missing, altered or too old."""
        if value is None:
            value = self.get_cookie(name)
        return read_signed_cookie(cookie_secret(self.server.options), name, value, max_age_days)

    # -- answers --------------------------------------------------------------------------
    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        """Answer with a redirect to ``url`` (302, or 301 when ``permanent``)."""
        if status is None:
            status = 301 if permanent else 302
        elif not 300 <= status <= 399:
            raise ValueError(f"a redirect's status must be 3xx, not {status}")
        self.set_status(status)
        self.set_header("Location", url)
        self.respond_raw(b"", "text/plain; charset=UTF-8")

    @property
    def response_type(self) -> str:
        """The content type raw answers use (``@raw_response``); the answer's type unless set."""
        if self._raw_type is not None:
            return self._raw_type
        return self._response_type or self.server.default_serializer.content_types[0]

    @response_type.setter
    def response_type(self, value: str) -> None:
        self._raw_type = value

    @property
    def transaction_id(self) -> uuid.UUID:
        """A random id of this request (the original's, for logs and hooks)."""
        if self._transaction_id is None:
            self._transaction_id = uuid.uuid4()
        return self._transaction_id

    # -- the original's class-level hooks -------------------------------------------------
    @classmethod
    def set_before_handler(cls, handler: Callable[[Any, uuid.UUID, str], Any]) -> None:
        """Call ``handler(request_handler, transaction_id, method)`` before every method call
        (HTTP, each batch entry, sockets) of servers made after this call (``toto.original.hooks``)."""
        hooks.before_handler = handler

    @classmethod
    def set_after_handler(cls, handler: Callable[[Any, uuid.UUID], Any]) -> None:
        """Call ``handler(request_handler, transaction_id)`` after every method call, with the
        ``transaction_id`` its before handler got."""
        hooks.after_handler = handler

    @classmethod
    def set_hmac_handler(cls, handler: Callable[..., Any]) -> None:
        """The original's request check ``handler(request_handler, session, request, headers)``
        of ``hmac_enabled=True``'s per-session key (``toto.original.keysigning``): raise
        ``TotoException`` to refuse the request."""
        keysigning.verify_handler = handler

    @classmethod
    def set_response_hmac_handler(cls, handler: Callable[..., str]) -> None:
        """The original's answer signature ``handler(request_handler, session, response_body)``
        (text) of ``hmac_enabled=True``'s per-session key (``toto.original.keysigning``)."""
        keysigning.response_handler = handler

    @property
    def current_user(self) -> str | None:
        """The user id of the request's session (None without one, or for an anonymous one)."""
        session = self.session
        return session.user_id if session is not None else None

    def error_info(self, e: BaseException) -> dict[str, Any]:
        """The original's error dict of an exception: a ``TotoException``'s ``{"code",
        "value"}``, anything else 1000 with its message (logged)."""
        return error_for(e, "error_info", True).to_dict()

    # -- server and storage ---------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """The server's options by name (Tornado's ``settings``: ``debug``, ``cookie_secret``...)."""
        return self.server.options.as_dict()

    @property
    def db(self) -> Any:
        """The storage's native client (``handler.connection.db``)."""
        connection = self.server.connection
        return connection.db if connection is not None else None

    @property
    def db_connection(self) -> DBConnection:
        """The original's account and session calls (``toto.dbconnection``)."""
        if self._db_connection is None:
            self._db_connection = DBConnection(self)  # type: ignore[arg-type]
        return self._db_connection

    def session_id_sent(self) -> str | None:
        """The session id the request names: ``x-toto-session-id``, else the session cookie
        when the request may use it (as for the request's own session: ``toto.origins``)."""
        session_id = self.request.headers.get("x-toto-session-id")
        if session_id:
            return session_id
        cookies = self.server.cookies
        if cookies is None or not self._cookie_allowed:
            return None
        return cookies.session_id(self)  # type: ignore[arg-type]

    def retrieve_session(self, session_id: str | None = None) -> asyncio.Future[Session | None]:
        """The request's session (``handler.session``), awaitable. The original loaded it
        here; Toto has already loaded and checked the session the request names, so this
        is done at once. With another ``session_id`` (``@authenticated_with_parameter``),
        that session is loaded and checked as the header's would be (1007, 1008; in
        ``user_id`` mode a bodiless, unsigned request may name it, as links do) and becomes
        ``handler.session``."""
        current = self.session
        if session_id is None or (current is not None and current.session_id == session_id):
            done: asyncio.Future[Session | None] = asyncio.get_running_loop().create_future()
            done.set_result(current)
            return done
        handler: TotoHandler = self  # type: ignore[assignment]
        return asyncio.ensure_future(handler.open_named_session(session_id))
