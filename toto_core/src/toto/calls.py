"""What every transport (HTTP, WebSocket; ASGI next) shares about one call: the one error
wrapper (``error_for``, ``fail_invocation``), the one ``respond`` and how a batch names its
methods (``resolve_batch``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, NoReturn

from toto.exceptions import ERROR_MALFORMED_REQUEST, ERROR_SERVER, TotoException

if TYPE_CHECKING:
    from toto.original.seed import DBConnection
    from toto.server import TotoServer
    from toto.sessions import Session

log = logging.getLogger("toto")


def error_for(exc: BaseException, where: str, debug: bool, logger: logging.Logger = log) -> TotoException:
    """The one conversion of an exception into the protocol's error, for every transport.

    A TotoException is answered as it is. Anything else is unexpected: logged here, once,
    with its traceback (``where`` names the request or call), and answered as 1000: with
    ``debug``, the exception's message (as the original did; the traceback stays in the log)."""
    if isinstance(exc, TotoException):
        return exc
    logger.error("error in %s", where, exc_info=exc)
    if debug:
        return TotoException(ERROR_SERVER, str(exc) or type(exc).__name__)
    return TotoException(ERROR_SERVER, f"Server error ({type(exc).__name__})")


def fail_invocation(
    server: Any, target: Any, method: str, exc: BaseException, where: str, logger: logging.Logger = log
) -> NoReturn:
    """Raise a method's failure as its caller answers it (``error_for``), shown to
    ``toto_after_invoke`` exactly so: the error wrapper of every invocation path. Call it
    from the ``except`` that caught ``exc``."""
    error = error_for(exc, where, server.debug, logger)
    if server.invoke_hooks:
        server.hook.toto_after_invoke(handler=target, method=method, result=None, error=error.to_dict())
    if error is exc:
        raise exc
    raise error from exc


def resolve_batch(lookup: Any, batch: Any, max_batch: int) -> dict[str, Any]:
    """The method of each entry of a batch (``{id: {"method", "parameters"}}``), or the
    TotoException that entry answers; a batch that is not an object, or holds more than
    ``max_batch`` calls, is refused whole (1011)."""
    if not isinstance(batch, dict):
        raise TotoException(ERROR_MALFORMED_REQUEST, "batch must be an object of {id: call}.")
    if len(batch) > max_batch:
        raise TotoException(ERROR_MALFORMED_REQUEST, f"A batch may hold at most {max_batch} calls.")
    methods: dict[str, Any] = {}
    for key, call in batch.items():
        try:
            if not isinstance(call, dict):
                raise TotoException(ERROR_MALFORMED_REQUEST, "Each batch entry must be an object.")
            methods[key] = lookup.resolve(call.get("method"))
        except TotoException as exc:
            methods[key] = exc
    return methods


def respond(target: Any, result: Any, error: Any, where: str, debug: bool, logger: logging.Logger = log) -> None:
    """``handler.respond(result, error)`` for any target with a ``pending_reply`` slot (a request,
    a batch entry, a socket call): settles the call's reply once; later answers are ignored.
    ``error`` may be a TotoException, any exception (``error_for``), a ``{code, value}``
    dict or a value answered as 1000."""
    reply = target.pending_reply
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # another thread: a callback-style method may answer from its own
        running = None
    if reply is None:
        if running is None:
            raise RuntimeError("respond() from another thread needs a call that waits for its answer")
        reply = running.create_future()
        target.pending_reply = reply
    elif reply.get_loop() is not running:
        # A future is settled on its own loop only: hand the answer over to it.
        reply.get_loop().call_soon_threadsafe(respond, target, result, error, where, debug, logger)
        return
    if reply.done():
        return
    if error is None:
        reply.set_result(result)
    elif isinstance(error, BaseException):
        reply.set_exception(error_for(error, where, debug, logger))
    elif isinstance(error, dict) and "code" in error:
        reply.set_exception(TotoException(error["code"], error.get("value")))
    else:
        reply.set_exception(TotoException(ERROR_SERVER, error))


def connection_gone(target: Any, methods: Any, logger: logging.Logger = log) -> None:
    """The caller of ``target`` (a request, a socket call) went away: each running method's
    ``on_connection_close(handler)`` is called, and a reply still awaited is cancelled."""
    for method in methods:
        if method.on_close is not None:
            try:
                method.on_close(target)
            except Exception:
                logger.exception("on_connection_close of %s failed", method.name)
    reply = target.pending_reply
    if reply is not None and not reply.done():
        reply.cancel()


class BatchEntryBase:
    """What one entry of a batch is to its method, on every face (a ``CallContext``): its own
    reply (``respond``), and the batch's session, server, storage and event handlers, which
    it forwards to the call that carries the batch (``handler``: an HTTP request or a socket
    message). Each face's entry adds only what differs (toto.handler.BatchEntry,
    toto.websocket.SocketBatchEntry)."""

    # weakly keyed by hooks (toto.original.hooks)
    __slots__ = ("__weakref__", "handler", "pending_reply")

    handler: Any

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.pending_reply: asyncio.Future[Any] | None = None

    @property
    def session(self) -> Session | None:
        return self.handler.session  # type: ignore[no-any-return]

    @session.setter
    def session(self, session: Session | None) -> None:
        # A method that signs out (handler.session = None) ends the batch's session.
        self.handler.session = session

    @property
    def server(self) -> TotoServer:
        return self.handler.server  # type: ignore[no-any-return]

    @property
    def request(self) -> Any:
        return self.handler.request

    @property
    def connection(self) -> Any:
        return self.handler.connection

    @property
    def db(self) -> Any:
        return self.handler.db

    @property
    def db_connection(self) -> DBConnection:
        return self.handler.db_connection  # type: ignore[no-any-return]

    def respond(self, result: Any = None, error: Any = None) -> None:
        handler = self.handler
        respond(self, result, error, handler.where(), handler.server.debug, log)

    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        return self.handler.create_session(user_id, password, verify_password)  # type: ignore[no-any-return]

    def retrieve_session(self, session_id: str | None = None) -> asyncio.Future[Session | None]:
        return self.handler.retrieve_session(session_id)  # type: ignore[no-any-return]

    def register_event_handler(
        self, event_name: str, handler: Any, run_on_main_loop: bool = True, deregister_on_finish: bool = False
    ) -> Any:
        return self.handler.register_event_handler(event_name, handler, run_on_main_loop, deregister_on_finish)

    def deregister_event_handler(self, sig: Any) -> None:
        self.handler.deregister_event_handler(sig)
