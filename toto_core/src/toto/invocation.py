"""Decorators for ``invoke`` functions of method modules."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from toto.exceptions import ERROR_MISSING_PARAMS, ERROR_NOT_AUTHORIZED, TotoException

Invoke = Callable[[Any, Any], Any]


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
