"""The original ``TotoHandler``'s class-level hooks, carried by Toto's own invoke hooks.

``TotoHandler.set_before_handler(fn)`` and ``set_after_handler(fn)`` (``toto.original.seed``) keep
the functions here; when one is set, the server registers ``OriginalHooks`` as a plugin
(``TotoServer._configure``), so ``fn`` rides on ``toto_before_invoke`` /
``toto_after_invoke`` wherever a call runs: over HTTP, in each entry of a batch, on a
WebSocket. Unset, nothing is registered and the request path pays nothing.

``fn`` is called as the original called it: ``before(handler, transaction_id, method)``
and ``after(handler, transaction_id)``, with the same ``uuid.UUID`` for the two calls of
one invocation: the request's ``transaction_id`` for a plain call, one of its own for each
batch entry and each socket call.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toto import hookimpl

if TYPE_CHECKING:
    from toto.original.seed import SeedHandler

#: ``fn(handler, transaction_id, method)``, set by ``TotoHandler.set_before_handler``.
before_handler: Callable[[Any, uuid.UUID, str], Any] | None = None
#: ``fn(handler, transaction_id)``, set by ``TotoHandler.set_after_handler``.
after_handler: Callable[[Any, uuid.UUID], Any] | None = None

PLUGIN_NAME = "toto-original-handler-hooks"


def wanted() -> bool:
    """Whether the application set either hook (the server then registers ``OriginalHooks``)."""
    return before_handler is not None or after_handler is not None


class OriginalHooks:
    """The plugin that calls the application's before and after handlers. ``request_handler``
    is the class of the request's own handler (``TotoHandler``, given by the server: this
    module sits below it), whose ``transaction_id`` a plain call's hooks share."""

    def __init__(self, request_handler: type[SeedHandler]) -> None:
        self._request_handler = request_handler
        # Targets that are not the request's handler (a batch entry, a socket call): their
        # own id, from the before call to the after call.
        self._ids: weakref.WeakKeyDictionary[Any, uuid.UUID] = weakref.WeakKeyDictionary()

    def _transaction_id(self, target: Any, new: bool) -> uuid.UUID:
        if isinstance(target, self._request_handler):
            return target.transaction_id
        try:
            known = self._ids.get(target)
            if known is None or new:
                known = self._ids[target] = uuid.uuid4()
        except TypeError:  # a target that cannot be weakly referenced: an id per call
            known = uuid.uuid4()
        return known

    @hookimpl
    def toto_before_invoke(self, handler: Any, method: str, parameters: Any) -> None:
        fn = before_handler
        if fn is not None:
            fn(handler, self._transaction_id(handler, True), method)

    @hookimpl
    def toto_after_invoke(self, handler: Any, method: str, result: Any, error: Any) -> None:
        fn = after_handler
        if fn is not None:
            fn(handler, self._transaction_id(handler, False))
