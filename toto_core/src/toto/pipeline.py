"""The one call sequence: what runs a call, whichever face it came in by.

An HTTP request (``toto.handler``), each entry of a batch and each message on a socket
(``toto.websocket``) are calls; a face turns its bytes into a call and the answer back
into bytes, and everything between is here, in the order it happens:

1. ``observe_started``: the request hooks hear of the call (``toto_request_started``).
2. The face resolves the method (``MethodLookup.resolve``; a batch: ``resolve_batch``).
3. ``open_session``: load the session the call names, check its signature with the
   authenticator's half for the face (a request's headers, a message's ``hmac``), renew
   it and take its lock; a failure is kept as the call's ``session_error``.
4. ``invoke`` (``run_batch`` for each entry of a batch): refuse an ``@authenticated``
   method without its session, ``toto_before_invoke``, check typed parameters, run the
   method (plain, callback style or ``async def``), wait for its answer and for the
   storage calls seed code left unawaited (``settle_work``), ``toto_after_invoke``.
5. The face saves the session's state, encodes, signs and hands the answer back.
6. ``observe_finished``: ``toto_request_finished`` with the status the answer carries.

What a method (and a hook) receives is a ``CallContext`` (``toto.context``). What the
sequence needs of the call that owns it is a ``Call``: the HTTP handler and the socket
call are both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from toto.calls import error_for, fail_invocation
from toto.exceptions import ERROR_INVALID_SESSION_ID, ERROR_SERVICE_UNAVAILABLE, TotoException
from toto.lookup import Method

if TYPE_CHECKING:
    from toto.context import CallContext
    from toto.original.seed import Pending
    from toto.sessions import Session

log = logging.getLogger("toto.request")


class Call(Protocol):
    """What the sequence reads and writes on the call that owns a method's run (an HTTP
    request, a socket message); batch entries share their call's."""

    server: Any
    session: Session | None
    #: Why the session the call named is not its session (1007, 1008, 1015), else None.
    session_error: TotoException | None
    #: The session whose lock the call holds (released by ``release_session``).
    locked_session: Session | None
    #: Parameters came as text (query, form), so typed methods may read "1" as 1.
    text_parameters: bool
    #: The methods running for the call (their ``on_connection_close`` when the client goes away).
    active_methods: list[Method]
    #: Storage calls seed code made without awaiting them (``toto.dbconnection``).
    pending_work: list[Pending[Any]] | None
    #: The method called (None for a batch), and a batch's size: what request hooks report.
    called: str | None
    batch_size: int | None

    def where(self) -> str:
        """The call as a log line names it."""
        ...

    def waiting(self) -> None:
        """The call waits on something: a face may watch for its client going away now."""
        ...

    async def before_callback(self, target: CallContext) -> None:
        """``target``'s callback-style method answers later through ``respond``: the
        session's state is saved and its lock released meanwhile (long polls)."""
        ...

    def release_session(self) -> None: ...


# -- 1 and 6: request hooks ---------------------------------------------------------------------------


def observe_started(call: Call) -> float:
    """``toto_request_started`` (when a plugin implements the request hooks); the start time."""
    try:
        call.server.hook.toto_request_started(handler=call)
    except Exception:
        log.exception("a toto_request_started hook failed")
    return time.perf_counter()


def observe_finished(call: Call, status: int, error: TotoException | None, started: float) -> None:
    """``toto_request_finished``, once the answer is decided and before its bytes go out, so
    what plugins count survives a process that dies right after answering."""
    try:
        call.server.hook.toto_request_finished(
            handler=call,
            method=call.called,
            batch=call.batch_size,
            status=status,
            error=None if error is None else error.to_dict(),
            seconds=time.perf_counter() - started,
        )
    except Exception:
        log.exception("a toto_request_finished hook failed")


# -- 3: the session -------------------------------------------------------------------------------------


async def open_session(
    call: Call, session_id: str, check: Callable[..., Awaitable[None] | None] | None, *signed: Any
) -> None:
    """Make ``session_id`` the call's session when it exists and ``check(call, session,
    *signed)`` (the authenticator's half for the face: ``verify_request`` with the body,
    ``verify_message`` with the message) accepts the call for it (``check`` None: an
    unsigned link, not checked); renew it and take its lock. Otherwise the call runs
    without a session and ``session_error`` says why (an ``@authenticated`` method is
    then refused with it). The storage being down (1013) is the call's answer, never a
    reason to run without the session."""
    sessions = call.server.sessions
    session = await sessions.load(session_id)
    if session is None:
        call.session_error = TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
        return
    call.locked_session = session
    try:
        checked = check(call, session, *signed) if check is not None else None
        if checked is not None:
            await checked
    except TotoException as exc:
        if exc.code == ERROR_SERVICE_UNAVAILABLE:
            raise
        call.release_session()
        call.session_error = exc
        return
    await sessions.renew(session)
    await sessions.lock(session)
    call.session = session


# -- 4: invoking ----------------------------------------------------------------------------------------


#: What methods answer most, none of them awaitable: ``invoke`` needs no ``hasattr`` to know.
_ANSWERS = frozenset((dict, list, str, int, float, bool, tuple))


class Waiting:
    """What ``invoke`` gives for a method that waits: the awaitable of its result (a
    wrapper, so a result that is itself awaitable is never mistaken for one)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


def invoke(call: Call, target: CallContext, method: Method, parameters: Any) -> Any:
    """Run ``method`` for ``target`` (the call itself or one entry of its batch) up to its
    first wait, between ``toto_before_invoke`` and ``toto_after_invoke``.

    A method that answered without waiting (a plain function) gives its result now: no
    coroutine, no task. One that waits gives ``Waiting`` of its result. Failures are
    raised (now or by the awaitable) as TotoException (``fail_invocation``)."""
    server = call.server
    if call.session_error is not None and method.authenticated and call.session is None:
        raise call.session_error
    if server.invoke_hooks:
        server.hook.toto_before_invoke(handler=target, method=method.name, parameters=parameters)
    call.active_methods.append(method)
    try:
        if method.validate is not None:
            parameters = method.validate(parameters, call.text_parameters)
        if method.callback_style and target.pending_reply is None:
            # Made before the method runs: a thread it starts may answer at once (calls.respond).
            target.pending_reply = asyncio.get_running_loop().create_future()
        result = method.invoke(target, parameters)
        if (
            not method.plain
            or call.pending_work
            or (result is not None and type(result) not in _ANSWERS and hasattr(result, "__await__"))
        ):
            call.waiting()
            return Waiting(_invoke_rest(call, target, method, result))
        if result is None:
            reply = target.pending_reply
            if reply is not None:
                if not reply.done():
                    call.waiting()
                    return Waiting(_invoke_rest(call, target, method, result))
                result = reply.result()
    except Exception as exc:
        fail_invocation(server, target, method.name, exc, call.where(), log)
    if server.invoke_hooks:
        server.hook.toto_after_invoke(handler=target, method=method.name, result=result, error=None)
    return result


async def invoke_async(call: Call, target: CallContext, method: Method, parameters: Any) -> Any:
    """``invoke``, awaited to the end."""
    result = invoke(call, target, method, parameters)
    if isinstance(result, Waiting):
        return await result.awaitable
    return result


async def _invoke_rest(call: Call, target: CallContext, method: Method, result: Any) -> Any:
    """The part of ``invoke`` after a method's first wait."""
    try:
        if result is not None and hasattr(result, "__await__"):
            result = await result
        if result is None:
            reply = target.pending_reply
            if reply is not None and reply.done():
                result = reply.result()
            elif method.callback_style:
                await call.before_callback(target)
                if reply is None:
                    reply = target.pending_reply = asyncio.get_running_loop().create_future()
                result = await reply
            elif reply is not None:
                result = await reply
        if call.pending_work:
            await settle_work(call)
    except Exception as exc:
        fail_invocation(call.server, target, method.name, exc, call.where(), log)
    if call.server.invoke_hooks:
        call.server.hook.toto_after_invoke(handler=target, method=method.name, result=result, error=None)
    return result


async def settle_work(call: Call) -> None:
    """Wait for the storage calls seed code made without awaiting them (toto.dbconnection):
    the first failure that no code awaited becomes the call's error."""
    while call.pending_work:
        work, call.pending_work = call.pending_work, None
        for pending in work:
            try:
                await pending.settled()
            except BaseException:
                created = call.session.creation if call.session is not None else None
                task = created.task if created is not None else None
                if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
                    call.session = None  # the answer must not name a session that was never stored
                raise


async def run_batch(
    call: Call,
    methods: dict[str, Method | TotoException],
    batch: dict[str, Any],
    entry: Callable[[str], CallContext],
) -> dict[str, dict[str, Any]]:
    """Each entry's answer (``{"result"}`` or ``{"error"}``), in the batch's order; ``entry(key)``
    is the context the entry's method receives.

    Entries run concurrently. A plain function cannot interleave with anything, so it runs
    right here; only entries that wait on something get a task."""
    answers: dict[str, dict[str, Any]] = {}
    waiting: dict[str, Awaitable[dict[str, Any]]] = {}
    for key, method in methods.items():  # the batch's order (resolve_batch)
        if type(method) is not Method:
            answers[key] = {"error": method.to_dict()}  # type: ignore[union-attr]
            continue
        try:
            result = invoke(call, entry(key), method, batch[key].get("parameters", {}))
        except Exception as exc:  # a TotoException, or a toto_before_invoke hook that failed
            answers[key] = {"error": error_for(exc, call.where(), call.server.debug, log).to_dict()}
            continue
        if type(result) is Waiting:
            waiting[key] = _entry_answer(result.awaitable)
        else:
            answers[key] = {"result": result}
    if not waiting:
        return answers
    for key, answer in zip(waiting, await asyncio.gather(*waiting.values())):
        answers[key] = answer
    return {key: answers[key] for key in batch}


async def _entry_answer(pending: Awaitable[Any]) -> dict[str, Any]:
    """A waiting batch entry's answer: its result, or the error ``invoke`` raised for it."""
    try:
        return {"result": await pending}
    except TotoException as exc:
        return {"error": exc.to_dict()}
