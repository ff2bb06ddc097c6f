"""Decorators for ``invoke`` functions of method modules, with the original's names.

``from toto.invocation import *`` gives the decorators, ``TotoException`` and every
``ERROR_*`` code, plus the few names the original's star import also carried and seed
code uses unqualified (``coroutine``, ``Return``, ``TaskQueue``, ``logging``, ``json``,
``format_exc``). The decorators may be stacked in any order; each one works on plain,
``async def`` and callback-style (``@asynchronous``) methods.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from traceback import format_exc
from typing import Any

from tornado.gen import Return, coroutine

from toto.exceptions import *  # noqa: F403  (re-exported: seed code reads ERROR_* from here)
from toto.exceptions import (
    ERROR_INVALID_SESSION_ID,
    ERROR_MALFORMED_REQUEST,
    ERROR_MISSING_PARAMS,
    ERROR_NOT_AUTHORIZED,
    TotoException,
)
from toto.exceptions import __all__ as _error_names
from toto.original.tasks import TaskQueue
from toto.redaction import redact_target

__all__ = [
    *_error_names,
    "Return",
    "TaskQueue",
    "anonymous_session",
    "asynchronous",
    "authenticated",
    "authenticated_with_parameter",
    "coroutine",
    "default_parameters",
    "error_redirect",
    "format_exc",
    "json",
    "jsonp",
    "logging",
    "optionally_authenticated",
    "raw_response",
    "requires",
]

Invoke = Callable[[Any, Any], Any]

log = logging.getLogger("toto.invocation")

#: A JSONP callback: a JavaScript identifier or a dotted path of them (``jQuery123_4``,
#: ``app.callbacks.done``), ASCII only, so a callback name can never carry script.
_JS_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*\Z")
_MAX_CALLBACK = 128


def _wrap(fn: Invoke, check: Callable[[Any, Any], None]) -> Invoke:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(handler: Any, parameters: Any) -> Any:
            check(handler, parameters)
            return await fn(handler, parameters)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(handler: Any, parameters: Any) -> Any:
        check(handler, parameters)
        return fn(handler, parameters)

    return wrapper


async def _settle(value: Any) -> Any:
    """``value``, awaited when it is awaitable (a coroutine, a future, an awaitable session)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _then(result: Any, after: Callable[[Any], Any]) -> Any:
    """``after(result)``: now for a plain method, once it resolves for one that returned an awaitable."""
    if inspect.isawaitable(result):

        async def later() -> Any:
            return after(await result)

        return later()
    return after(result)


def _prepared(fn: Invoke, prepare: Callable[[Any, Any], Any]) -> Invoke:
    """``fn`` after ``await prepare(handler, parameters)``; the wrapper is ``async`` and
    keeps ``fn``'s markers (``asynchronous``, ``required_parameters``...)."""

    @functools.wraps(fn)
    async def wrapper(handler: Any, parameters: Any) -> Any:
        await prepare(handler, parameters)
        return await _settle(fn(handler, parameters))

    return wrapper


def _require_user(handler: Any, parameters: Any) -> None:
    session = handler.session
    if session is None or session.user_id is None:
        raise TotoException(ERROR_NOT_AUTHORIZED, "Not authorized")


def authenticated(fn: Invoke) -> Invoke:
    """Refuse the call with 1004 unless it carries a signed-in user's session."""
    wrapped = _wrap(fn, _require_user)
    wrapped.authenticated = True  # type: ignore[attr-defined]  # read by toto.catalogue
    return wrapped


def optionally_authenticated(fn: Invoke) -> Invoke:
    """Run with the caller's session when it is valid, and without one when the named
    session is unknown or expired (instead of answering 1007)."""
    fn.optionally_authenticated = True  # type: ignore[attr-defined]
    return fn


def anonymous_session(fn: Invoke) -> Invoke:
    """Run with the caller's session, or, when the request names none (or one that has
    ended), with a new anonymous session that the answer hands to the client; a signed-in
    caller keeps its own session."""

    async def open_anonymous(handler: Any, parameters: Any) -> None:
        if handler.session is None:
            await _settle(handler.create_session())

    wrapped = _prepared(fn, open_anonymous)
    wrapped.optionally_authenticated = True  # type: ignore[attr-defined]  # a stale session gets a new one
    wrapped.anonymous_session = True  # type: ignore[attr-defined]  # read by toto.catalogue
    return wrapped


def authenticated_with_parameter(fn: Invoke) -> Invoke:
    """Like ``@authenticated``, but the session may be named by the ``session_id``
    parameter instead of the header (for links, ``<script>`` and ``<img>`` requests that
    cannot set headers). ``session_id`` is removed from the parameters before ``fn`` runs.

    As in the original, any session passes (an anonymous one too): 1004 without one, 1007
    when the named session is unknown or expired, 1008 when the signature the mode asks
    for is wrong (see ``TotoHandler.retrieve_session``).
    """

    async def open_named(handler: Any, parameters: Any) -> None:
        if isinstance(parameters, dict) and "session_id" in parameters:
            session_id = parameters.pop("session_id")
            if not isinstance(session_id, str) or not session_id:
                raise TotoException(ERROR_NOT_AUTHORIZED, "Not authorized")
            if await _settle(handler.retrieve_session(session_id)) is None:
                raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
        if handler.session is None:
            raise TotoException(ERROR_NOT_AUTHORIZED, "Not authorized")

    wrapped = _prepared(fn, open_named)
    wrapped.authenticated = True  # type: ignore[attr-defined]  # read by toto.catalogue
    # The wrapper refuses on its own: a stale header session must not answer before the parameter is read.
    wrapped.session_parameter = True  # type: ignore[attr-defined]
    # The header's session is not required (the parameter may name one instead).
    wrapped.optionally_authenticated = True  # type: ignore[attr-defined]
    return wrapped


def requires(*names: str) -> Callable[[Invoke], Invoke]:
    """Refuse the call with 1003, naming what is missing, unless every parameter is given."""

    def decorate(fn: Invoke) -> Invoke:
        def check(handler: Any, parameters: Any) -> None:
            if not isinstance(parameters, dict):
                missing = list(names)
            else:
                missing = [n for n in names if n not in parameters]
            if missing:
                raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: " + ", ".join(missing))

        wrapped = _wrap(fn, check)
        # Stacked @requires list every name (functools.wraps copied the inner ones); toto.catalogue reads them.
        wrapped.required_parameters = (*getattr(fn, "required_parameters", ()), *names)  # type: ignore[attr-defined]
        if getattr(fn, "optionally_authenticated", False):
            wrapped.optionally_authenticated = True  # type: ignore[attr-defined]
        if getattr(fn, "asynchronous", False):
            wrapped.asynchronous = True  # type: ignore[attr-defined]
        return wrapped

    return decorate


def asynchronous(fn: Invoke) -> Invoke:
    """Mark a callback-style method: when ``invoke`` returns None the request stays open
    until the method calls ``handler.respond(...)`` (or ``respond_raw``)."""
    fn.asynchronous = True  # type: ignore[attr-defined]
    return fn


def raw_response(fn: Invoke) -> Invoke:
    """Send what ``fn`` returns (bytes or text) as the body, without the Toto envelope, with
    the content type ``handler.response_type`` (``application/octet-stream`` unless ``fn``
    sets another)."""

    @functools.wraps(fn)
    def wrapper(handler: Any, parameters: Any) -> Any:
        handler.response_type = "application/octet-stream"

        def send(body: Any) -> None:
            handler.respond_raw(b"" if body is None else body, handler.response_type)

        return _then(fn(handler, parameters), send)

    return wrapper


def jsonp(callback_name: str | Invoke = "jsonp") -> Any:
    """Answer ``callback(<result as JSON>)`` as JavaScript when the request has the
    parameter ``callback_name`` (default ``jsonp``), and as any other call without it.

    ``@jsonp`` and ``@jsonp("callback")`` both work. The callback must be a JavaScript
    identifier or a dotted path of them (else 1011, HTTP 400): a callback name can never
    inject script. The answer is ``text/javascript`` with ``nosniff``; it carries the result
    only, not the session. Decorators applied before (below) ``@jsonp`` still run.

    Any site's page may include the answer as a ``<script>`` and read it, so a JSONP call
    never runs with the session cookie's session (``use_cookies``): it runs as if no
    cookie came. A session named by a parameter (``@authenticated_with_parameter``) or a
    header still counts (another site cannot know it).
    """

    def decorate(fn: Invoke, name: str) -> Invoke:
        @functools.wraps(fn)
        def wrapper(handler: Any, parameters: Any) -> Any:
            callback = parameters.get(name) if isinstance(parameters, dict) else None
            if not callback:
                return fn(handler, parameters)
            if not isinstance(callback, str) or len(callback) > _MAX_CALLBACK or not _JS_CALLBACK.match(callback):
                shown = callback if isinstance(callback, str) and len(callback) <= _MAX_CALLBACK else "<too long>"
                raise TotoException(
                    ERROR_MALFORMED_REQUEST,
                    f"The {name} parameter must be a JavaScript function name "
                    f"(letters, digits, _ and $, dot-separated), not {shown!r}",
                )
            del parameters[name]

            def send(result: Any) -> None:
                payload = handler.server.default_serializer.encode(result)  # ASCII-only JSON
                handler.set_header("X-Content-Type-Options", "nosniff")
                # The leading comment keeps a body that starts with the callback from being
                # read as anything but script (the Rosetta Flash defence).
                body = b"/**/" + callback.encode("ascii") + b"(" + payload + b");"
                handler.respond_raw(body, "text/javascript; charset=utf-8")

            return _then(fn(handler, parameters), send)

        wrapper.jsonp_parameter = name  # type: ignore[attr-defined]  # read by toto.lookup: no cookie session
        return wrapper

    if isinstance(callback_name, str):
        return lambda fn: decorate(fn, callback_name)
    return decorate(callback_name, "jsonp")


def error_redirect(redirect_map: Mapping[Any, str], default: str | None = None) -> Callable[[Invoke], Invoke]:
    """Redirect instead of answering an error: to ``redirect_map[str(error.code)]``, else
    ``redirect_map[str(error.status_code)]``, else ``default``; with no match the error is
    answered as usual. For example::

        @error_redirect({"1004": "/login.html", "404": "/not_found.html"}, "/error.html")
        def invoke(handler, parameters): ...

    Inside a batch an error answers its entry as usual (a redirect would end the others).
    """
    targets = {str(key): url for key, url in redirect_map.items()}

    def decorate(fn: Invoke) -> Invoke:
        def redirected(handler: Any, exc: Exception) -> bool:
            if getattr(handler, "request_key", None) is not None:  # a batch entry
                return False
            url = None
            code = getattr(exc, "code", None)
            if code is not None:
                url = targets.get(str(code))
            status = getattr(exc, "status_code", None)
            if url is None and status is not None:
                url = targets.get(str(status))
            url = url or default
            if url is None:
                return False
            if getattr(handler.server, "debug", False):
                log.error(
                    "redirecting to %s after an error in %s", url, redact_target(handler.request.uri), exc_info=exc
                )
            handler.redirect(url)
            return True

        @functools.wraps(fn)
        def wrapper(handler: Any, parameters: Any) -> Any:
            try:
                result = fn(handler, parameters)
            except Exception as exc:
                if redirected(handler, exc):
                    return None
                raise
            if not inspect.isawaitable(result):
                return result

            async def later() -> Any:
                try:
                    return await result
                except Exception as exc:
                    if redirected(handler, exc):
                        return None
                    raise

            return later()

        return wrapper

    return decorate


def default_parameters(defaults: Mapping[str, Any]) -> Callable[[Invoke], Invoke]:
    """Fill in each parameter of ``defaults`` the request does not give (a fresh copy each
    call, so a method that changes a default list changes only its own)."""
    given = dict(defaults)

    def decorate(fn: Invoke) -> Invoke:
        def fill(handler: Any, parameters: Any) -> None:
            if not isinstance(parameters, dict):
                raise TotoException(ERROR_MALFORMED_REQUEST, "The parameters must be an object.")
            for name, value in given.items():
                if name not in parameters:
                    parameters[name] = copy.deepcopy(value)

        return _wrap(fn, fill)

    return decorate
