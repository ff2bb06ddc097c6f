"""WebSockets (PROTOCOL.md section 9): the same methods, sessions and signing over one
connection, with events pushed.

``use_web_sockets=true`` serves ``<root><socket_path>`` on the Tornado transport: its
request delegate (``toto.transports.tornado``) hands an upgrade request for that path to a
small Tornado ``web.Application`` whose only handler is ``TotoSocketHandler``; everything
else stays on Toto's own HTTP path.

The socket face of the one call sequence (``toto.pipeline``, which HTTP requests run too).
Per message: parse (the frame's serializer) -> (session-naming message: remember the id)
-> resolve the method -> ``pipeline.open_session`` (the authenticator's message half) ->
``pipeline.invoke`` / ``run_batch`` -> follow a login or logout -> answer ``{"id",
"result"|"error"}``. A plain method with no session to load and no request hooks to
hear of it answers within ``on_message``; other calls run as tasks of their own, so
answers may come out of order. A socket's answers and pushes of one loop tick leave in
one write (``TotoSocketHandler._flush``).

Signed calls (see README "WebSockets" for the exact bytes): the frame's serializer finds
the ``hmac`` member and the bytes it covers (``Serializer.split_signature``: JSON text
ending in ``,"hmac":"<base64>"}``; toto-msgpack's map whose last entry is ``hmac``), and
the hmac_mode's authenticator checks them (``Authenticator.verify_message``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado import web
from tornado.websocket import WebSocketHandler

from toto import pipeline
from toto.auth import Authenticator
from toto.calls import BatchEntryBase, connection_gone, error_for, resolve_batch, respond
from toto.eventbus import Position
from toto.events import EventManager, parse_position, position_frame
from toto.exceptions import (
    ERROR_INVALID_HMAC,
    ERROR_INVALID_SESSION_ID,
    ERROR_MALFORMED_REQUEST,
    ERROR_NOT_AUTHORIZED,
    ERROR_SERVER,
    ERROR_SERVICE_UNAVAILABLE,
    ERROR_UNSUPPORTED_CONTENT_TYPE,
    PluginError,
    TotoException,
)
from toto.frames import FrameWatch, UnfinishedMessages, frame_head, frame_reading_followed
from toto.lookup import Method, MethodLookup
from toto.original.seed import DBConnection

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.context import CallContext
    from toto.original.seed import Pending
    from toto.serializers import Serializer
    from toto.server import TotoServer
    from toto.sessions import Session

log = logging.getLogger("toto.websocket")

#: Close codes (RFC 6455 section 7.4.1) as PROTOCOL.md section 9 uses them.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

SUBSCRIBE = "toto.subscribe"
UNSUBSCRIBE = "toto.unsubscribe"

#: Running socket_closed_method coroutines (the loop keeps only weak references to tasks).
_closing: set[asyncio.Future[Any]] = set()
_TEXT_HMAC = re.compile(r',"hmac":"([A-Za-z0-9+/=]*)"\}\Z')
_SESSION_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}\Z")
#: ``TotoSocketHandler._serve``'s call has not run its method yet.
_NOT_INVOKED: Any = object()


def _function(path: str, option: str) -> Callable[..., Any] | None:
    if not path:
        return None
    module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{option} {path!r} cannot be found: {exc}") from None
    if not callable(found):
        raise PluginError(f"{option} {path!r} is not module.function")
    return found  # type: ignore[no-any-return]


# -- the endpoint ---------------------------------------------------------------------------------


class SocketHub:
    """The WebSocket endpoint of one server: its options, its open sockets, its shutdown."""

    def __init__(self, server: TotoServer) -> None:
        o = server.options
        self.server = server
        self.path = str(o.socket_path).strip("/")
        if o.socket_method_module:
            try:
                self.methods = MethodLookup(o.socket_method_module, builtin_accounts=o.builtin_accounts)
            except ImportError as exc:
                raise PluginError(str(exc).replace("method_module", "socket_method_module")) from None
        else:
            self.methods = server.methods
        self.opened = _function(o.socket_opened_method, "socket_opened_method")
        self.closed = _function(o.socket_closed_method, "socket_closed_method")
        self.max_sockets = int(o.socket_max_sockets)
        self.max_calls = max(1, int(o.socket_max_calls))
        self.max_subscriptions = int(o.socket_max_subscriptions)
        self.recovery_limit = max(0, int(o.socket_recovery_limit))
        self.max_queue = max(1, int(o.socket_max_queue))
        self.session_check = float(o.socket_session_check)
        self.event_patterns = [p.strip() for p in str(o.socket_events).split(",") if p.strip()]
        #: allow_origin, parsed once for CORS and sockets (toto.origins).
        self.origins = server.origins
        #: The hmac_mode's authenticator: its message half checks every call naming a session.
        self.authenticator: Authenticator = server.authenticator
        #: The formats of text and binary frames (``Serializer.frames``); no binary one: binary frames are refused.
        self.text_serializer = server.default_serializer
        installed = {id(s): s for s in server.serializers.values()}.values()
        self.binary_serializer = next((s for s in installed if s.frames == "binary"), None)
        self.sockets: set[TotoSocketHandler] = set()
        if not frame_reading_followed():
            raise PluginError(
                "this Tornado's WebSocketProtocol13 has no coroutine _read_bytes(n), which toto.frames follows to "
                "bound unfinished socket messages: install the Tornado version constraints.txt pins"
            )
        #: Messages begun and not finished, on every socket of this process (toto.frames).
        self.unfinished = UnfinishedMessages(int(o.socket_max_unfinished), float(o.socket_message_timeout))
        ping = float(o.socket_ping_interval)
        self.app = web.Application(
            [(r".*", TotoSocketHandler, {"hub": self})],
            websocket_max_message_size=int(o.socket_max_message),
            websocket_ping_interval=ping or None,
            websocket_ping_timeout=min(float(o.socket_ping_timeout), ping) if ping else None,
            log_function=lambda handler: None,
        )

    def serves(self, path: str) -> bool:
        """Whether ``path`` (below root) is the socket endpoint: ``<socket_path>`` or, as in
        the original, ``<socket_path>/<session_id>``."""
        path = path.strip("/")
        if path == self.path:
            return True
        head, _, tail = path.rpartition("/")
        return head == self.path and bool(_SESSION_ID.match(tail))

    def start_request(self, server_conn: object, request_conn: Any) -> Any:
        return self.app.start_request(server_conn, request_conn)

    def subscribable(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.event_patterns)

    def busy(self) -> int:
        return sum(s.running for s in self.sockets)

    async def shutdown(self, timeout: float) -> None:
        """Let running calls finish (up to ``timeout`` seconds), then close every socket with
        1001 going away and wait a moment for the closing handshakes."""
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for socket in list(self.sockets):
            socket.close(CLOSE_GOING_AWAY, "server going away")
        deadline = time.monotonic() + 2.0
        while self.sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


class TotoSocketHandler(WebSocketHandler):
    """One client's socket. Open/close hooks (``socket_opened_method``,
    ``socket_closed_method``) receive it; methods reach it as ``handler.socket``.

    ``session_id`` is the session the socket names; ``send_message(data)`` writes ``data``
    to the client as is (the original's call); ``closed`` tells whether it is over.
    """

    def initialize(self, hub: SocketHub) -> None:
        self.hub = hub
        self.server = hub.server
        self.connection = hub.server.connection
        self.db = getattr(self.connection, "db", None)
        self.session_id: str | None = None
        #: True once a call ran with the named session: its end closes the socket.
        self.had_session = False
        self.closed = False
        self.binary = False  # pushes go in the type of the latest call
        self.tasks: set[asyncio.Task[Any]] = set()
        #: Calls not answered yet (socket_max_calls counts these).
        self.running = 0
        self.calls: set[SocketCall | SocketBatchEntry] = set()
        self.subscriptions: dict[str, tuple[str, int]] = {}
        self.registered_event_handlers: list[Any] = []
        #: While a resubscription replays what the socket missed: the live pushes held back
        #: until the replayed ones are out, as ``(event, data, position)``.
        self._held: list[tuple[str, Any, Position | None]] | None = None
        #: Per event name, the newest position a recovery pushed from the history: the bus's
        #: history may run ahead of what this server has heard, so live pushes up to it were
        #: pushed already and are dropped.
        self._floors: dict[str, Position] = {}
        self._recovering = asyncio.Lock()
        self.queued = 0
        #: Frames (heads and payloads) written at the end of this loop tick (``send``, ``_flush``).
        self._out: list[bytes] | None = None
        self._checker: asyncio.Task[None] | None = None
        #: What EventManager ties this socket's event handlers to (dropped once it closes).
        self.owner = _Owner(self)
        #: The frames its protocol reads (toto.frames), once the handshake chose one.
        self.frames: FrameWatch | None = None

    # -- the handshake --------------------------------------------------------------------------
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            self._refuse(400, ERROR_MALFORMED_REQUEST, "This path serves WebSockets only.")
            return
        refused = self._refused_origin()
        if refused is not None:
            self._refuse(403, ERROR_NOT_AUTHORIZED, refused)
            return
        await super().get(*args, **kwargs)

    def _refuse(self, status: int, code: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(self.server.default_serializer.encode({"error": {"code": code, "value": text}}))

    def _refused_origin(self) -> str | None:
        """Why a handshake is refused for where it comes from (PROTOCOL.md section 9), or None.

        A handshake another site's page could have opened (``AllowedOrigins.admits``, the
        rule HTTP requests follow) may not carry the visitor's session cookie: that is
        cross-site WebSocket hijacking. A session named by the handshake's header or path
        needs no origin rule (no page of another site knows it). Otherwise such a page may
        open a socket only with ``allow_origin=*``, as it may read HTTP answers only then.
        """
        if self._named_session() is not None:
            return None
        headers = self.request.headers
        origins = self.hub.origins
        if origins.admits(headers):
            return None
        cookies = self.server.cookies
        if cookies is not None and cookies.named(self.request) is not None:
            return "A session cookie is not accepted from another site's page (allow_origin)."
        if not origins.any:
            return f"Origin {headers.get('Origin')!r} is not in allow_origin."
        return None

    def get_websocket_protocol(self) -> Any:
        protocol = super().get_websocket_protocol()
        if protocol is not None:
            self.frames = self.hub.unfinished.watch(protocol, self.close)
        return protocol

    def check_origin(self, origin: str) -> bool:
        """Always: ``_refused_origin`` decided before Tornado asks, with the rule HTTP follows."""
        return True

    def _named_session(self) -> str | None:
        """The session the handshake names by header or, as in the original, as the last path segment."""
        named = self.request.headers.get("x-toto-session-id")
        if not named:
            tail = self.request.path.strip("/").rpartition("/")[2]
            if tail and tail != self.hub.path and _SESSION_ID.match(tail):
                named = tail
        return named or None

    async def open(self, *args: Any, **kwargs: Any) -> None:
        hub = self.hub
        hub.sockets.add(self)
        if hub.max_sockets and len(hub.sockets) > hub.max_sockets:
            log.warning("refusing sockets beyond socket_max_sockets=%d (1013)", hub.max_sockets)
            self.close(CLOSE_TRY_AGAIN, "too many sockets; try again later")
            return
        if self.server.draining:
            self.close(CLOSE_GOING_AWAY, "server going away")
            return
        named = self._named_session()
        if not named and self.server.cookies is not None:
            # A web app on cookie sessions (use_cookies): the browser sends the signed cookie
            # (from an admitted page only: _refused_origin refused the others' handshakes).
            named = self.server.cookies.session_id(self)  # type: ignore[arg-type]
        self.session_id = named or None
        if hub.session_check > 0:
            self._checker = asyncio.ensure_future(self._check_session_loop(hub.session_check))
        if hub.opened is not None:
            try:
                result = hub.opened(self)
                if result is not None and hasattr(result, "__await__"):
                    await result
            except Exception:
                log.exception("socket_opened_method failed")

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        hub = self.hub
        hub.sockets.discard(self)
        if self.frames is not None:
            self.frames.end()
        if self._checker is not None:
            self._checker.cancel()
        manager = EventManager.instance()
        for sig in [*self.subscriptions.values(), *self.registered_event_handlers]:
            manager.remove_handler(sig)
        self.subscriptions.clear()
        self.registered_event_handlers.clear()
        for call in list(self.calls):
            call.connection_closed()
        for task in list(self.tasks):
            task.cancel()
        if hub.closed is not None:
            try:
                result = hub.closed(self)
                if result is not None and hasattr(result, "__await__"):
                    task = asyncio.ensure_future(result)
                    _closing.add(task)
                    task.add_done_callback(_closing.discard)
            except Exception:
                log.exception("socket_closed_method failed")

    def on_ping(self, data: bytes) -> None:
        pass

    # -- messages -------------------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        if self.frames is not None:
            self.frames.end()  # complete: no longer an unfinished message (toto.frames)
        binary = isinstance(message, bytes)
        try:
            request, data, serializer = self._parse(message)
        except TotoException as exc:
            self.send({"id": None, "error": exc.to_dict()}, binary)
            return
        self.binary = binary
        msg_id = request.get("id")
        if "method" not in request and "batch" not in request:
            if "session_id" in request:
                named = request["session_id"]
                if named is not None and not isinstance(named, str):
                    self.send({"id": msg_id, "error": _malformed("session_id must be a string.")}, binary)
                    return
                self.session_id = named or None
                self.had_session = False
                if msg_id is not None:
                    self.send({"id": msg_id, "result": True}, binary)
                return
            self.send({"id": msg_id, "error": _malformed("A call needs a method (or a batch).")}, binary)
            return
        if not _is_scalar(msg_id):
            self.send({"id": None, "error": _malformed("id must be a string, a number or null.")}, binary)
            return
        if self.running >= self.hub.max_calls:
            error = TotoException(
                ERROR_SERVICE_UNAVAILABLE, f"More than socket_max_calls={self.hub.max_calls} calls running; retry."
            )
            self.send({"id": msg_id, "error": error.to_dict()}, binary)
            return
        self.running += 1  # until its answer is sent (the task itself ends a moment later)
        call = SocketCall(self, request, data, serializer)
        self.calls.add(call)
        name = request.get("method")
        if self.session_id or self.server.request_hooks or "batch" in request or name in (SUBSCRIBE, UNSUBSCRIBE):
            self._spawn(self._serve(call, binary))
            return
        # No session to load and no request hooks: a plain method answers here and now, with no
        # task and no coroutine (``pipeline.invoke``); one that waits goes on in a task.
        try:
            method = self.hub.methods.resolve(name)
            call.called = method.name
            result = pipeline.invoke(call, call, method, request.get("parameters", {}))
        except Exception as exc:
            self._end(call)
            self._answer(call, binary, *self._failed(exc, name))
            return
        if isinstance(result, pipeline.Waiting) or call.session is not None:
            self._spawn(self._serve(call, binary, result))
            return
        self._end(call)
        self._answer(call, binary, {"result": result}, None)

    def _spawn(self, serving: Awaitable[None]) -> None:
        task = asyncio.ensure_future(serving)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _parse(self, message: str | bytes) -> tuple[dict[str, Any], bytes, Serializer]:
        if isinstance(message, bytes):
            found = self.hub.binary_serializer
            if found is None:
                raise TotoException(
                    ERROR_UNSUPPORTED_CONTENT_TYPE, "Binary messages are msgpack: install toto-msgpack on the server."
                )
            serializer = found
            data = message
        else:
            serializer = self.hub.text_serializer
            data = message.encode("utf-8")
        try:
            request = serializer.decode(data)
        except TotoException:
            raise
        except (ValueError, TypeError, RecursionError, UnicodeDecodeError, OverflowError) as exc:
            text = str(exc)
            raise TotoException(ERROR_MALFORMED_REQUEST, f"Malformed message: {text[:200]}") from None
        if not isinstance(request, dict):
            raise TotoException(ERROR_MALFORMED_REQUEST, "A message must be an object.")
        return request, data, serializer

    async def _serve(self, call: SocketCall, binary: bool, invoked: Any = _NOT_INVOKED) -> None:
        """Run ``call`` to its answer (``invoked``: what ``pipeline.invoke`` gave for it already,
        in ``on_message``)."""
        request = call.message
        observed = self.server.request_hooks
        started = pipeline.observe_started(call) if observed else 0.0
        try:
            if invoked is not _NOT_INVOKED:
                result = await invoked.awaitable if isinstance(invoked, pipeline.Waiting) else invoked
                await call.settle()
                answer, error = {"result": result}, None
            elif "batch" in request:
                answer, error = await self._batch(call, request), None
            else:
                answer, error = await self._call(call, request), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            answer, error = self._failed(exc, request.get("method"))
        finally:
            self._end(call)
        self._answer(call, binary, answer, error, started if observed else None)

    def _failed(self, exc: Exception, name: Any) -> tuple[dict[str, Any], TotoException]:
        """The answer (and the error) of a call that raised ``exc``."""
        error = exc if isinstance(exc, TotoException) else self._unexpected(exc, name)
        return {"error": error.to_dict()}, error

    def _end(self, call: SocketCall) -> None:
        """The call ran: it no longer counts against socket_max_calls, nor holds its session."""
        self.calls.discard(call)
        call.release_session()
        self.running -= 1

    def _answer(
        self,
        call: SocketCall,
        binary: bool,
        answer: dict[str, Any],
        error: TotoException | None,
        started: float | None = None,
    ) -> None:
        """Send the call's answer; report it to the request hooks (``started``: they heard of it)."""
        if error is not None and error.code == ERROR_SERVICE_UNAVAILABLE:
            log.warning("socket call %s: %s", call.called, error.value)
        if started is not None:
            # The status the same answer carries over HTTP (PROTOCOL.md section 7).
            pipeline.observe_finished(call, 200 if error is None else error.status, error, started)
        self.send({"id": call.message.get("id"), **answer}, binary)
        if call.close_reason is not None:
            self.close(CLOSE_POLICY, call.close_reason)

    async def _call(self, call: SocketCall, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("method")
        parameters = request.get("parameters", {})
        if name in (SUBSCRIBE, UNSUBSCRIBE):
            call.called = name
            return {"result": await self._subscribe(name, parameters)}
        method = self.hub.methods.resolve(name)
        call.called = method.name
        await self._open_session(call, method.authenticated)
        result = await pipeline.invoke_async(call, call, method, parameters)
        await call.settle()
        return {"result": result}

    async def _batch(self, call: SocketCall, request: dict[str, Any]) -> dict[str, Any]:
        batch = request["batch"]
        methods: dict[str, Method | TotoException] = resolve_batch(self.hub.methods, batch, self.server.max_batch)
        call.batch_size = len(batch)
        await self._open_session(call, any(isinstance(m, Method) and m.authenticated for m in methods.values()))
        entries: list[SocketBatchEntry] = []

        def entry(key: str) -> SocketBatchEntry:
            made = SocketBatchEntry(call)
            entries.append(made)
            self.calls.add(made)
            return made

        try:
            answers = await pipeline.run_batch(call, methods, batch, entry)
        finally:
            self.calls.difference_update(entries)
        await call.settle()
        return {"batch": answers}

    # -- sessions and signatures ----------------------------------------------------------------
    async def _open_session(self, call: SocketCall, required: bool) -> None:
        """Give ``call`` the socket's session when it exists and the message is signed for
        it (``pipeline.open_session``, checked by the authenticator's message half). A
        message whose methods ask for a session (``@authenticated``) gets 1007 / 1008 / 1015
        instead of running without (a bad signature closes the socket); one that does not
        runs with ``session = None``."""
        session_id = self.session_id
        if not session_id:
            return
        await call.open_session(session_id)
        if call.session is not None:
            call.opened_with = call.session
            self.had_session = True
            return
        error = call.session_error
        if error is not None and error.code == ERROR_INVALID_SESSION_ID and self.had_session:
            call.close_reason = "session ended"
        if required and error is not None:
            if error.code == ERROR_INVALID_HMAC:
                call.close_reason = "bad signature"
            raise error

    async def _check_session_loop(self, interval: float) -> None:
        """Close the socket once the session it ran calls with is gone (logout elsewhere, expiry)."""
        while not self.closed:
            await asyncio.sleep(interval)
            session_id = self.session_id
            if not session_id or not self.had_session:
                continue
            try:
                record = await self.server.storage.load_session(session_id)
            except Exception as exc:  # storage down: try again next time, never close for it
                log.debug("socket session check failed: %s", exc)
                continue
            if record is None or record.expires < time.time():
                if session_id == self.session_id:
                    self.close(CLOSE_POLICY, "session ended")
                    return

    # -- events ---------------------------------------------------------------------------------
    async def _subscribe(self, name: str, parameters: Any) -> dict[str, Any]:
        events = parameters.get("events") if isinstance(parameters, dict) else None
        if isinstance(events, str):
            events = [events]
        if name == UNSUBSCRIBE and events is None:
            events = list(self.subscriptions)
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise TotoException(ERROR_MALFORMED_REQUEST, "events must be a list of event names.")
        manager = EventManager.instance()
        if name == UNSUBSCRIBE:
            for event in events:
                sig = self.subscriptions.pop(event, None)
                self._floors.pop(event, None)
                if sig is not None:
                    manager.remove_handler(sig)
            return {"subscribed": sorted(self.subscriptions)}
        refused = [e for e in events if not self.hub.subscribable(e)]
        if refused:
            raise TotoException(
                ERROR_MALFORMED_REQUEST,
                f"Events this server does not push to sockets (option socket_events): {refused[:10]}",
            )
        since: Position | None = None
        if isinstance(parameters, dict) and parameters.get("since") is not None:
            try:
                since = parse_position(parameters["since"])
            except ValueError as exc:
                raise TotoException(ERROR_MALFORMED_REQUEST, f"since: {exc}") from None
        recover = since is not None or (isinstance(parameters, dict) and parameters.get("recover") is True)
        if not recover:
            self._register(events)
            return {"subscribed": sorted(self.subscriptions)}
        self._fit(events)  # refused before waiting for a recovery running on this socket
        async with self._recovering:
            return await self._subscribe_recovering(sorted(dict.fromkeys(events)), since)

    async def _subscribe_recovering(self, events: list[str], since: Position | None) -> dict[str, Any]:
        """Subscribe to ``events`` and answer the position the subscription starts after
        (README "WebSockets", recovery). With ``since`` (the last position the client saw),
        first push what came after it from the bus's history, holding live pushes back
        until then, so none is pushed twice or out of order at the seam."""
        manager = EventManager.instance()
        bus = manager.bus
        numbered = bus is not None and bus.delivery.sequence == "bus"
        start = None
        if numbered and manager.last_position is None and since is None and bus is not None:
            try:
                start = await bus.position()  # nothing reached this server yet: where the stream stands
            except Exception as exc:
                log.warning("socket subscription: the event bus could not tell its position: %s", exc)
        if self.closed:
            return {"subscribed": sorted(self.subscriptions)}
        self._fit(events)  # again: another subscription may have run meanwhile
        if since is not None:
            self._held = []
        self._register(events)
        until = manager.last_position if numbered else None
        answer: dict[str, Any] = {"subscribed": sorted(self.subscriptions)}
        if since is None:
            position = until or start
            answer["position"] = position_frame(position) if position is not None else None
            return answer
        try:
            recovery = await manager.recover(since, events, self.hub.recovery_limit, until)
        except Exception as exc:
            log.warning("socket subscription: the event bus could not replay its history: %s", exc)
            recovery = None
        held, self._held = self._held or [], None
        cursor = since
        if recovery is not None:
            cursor = recovery.position
            for event, data, position in recovery.events:
                self._push(event, data, position)
        for event in events:
            self._floors[event] = cursor
        for event, data, position in held:
            self._push(event, data, position)
        answer["position"] = position_frame(cursor)
        answer["recovered"] = recovery is not None and recovery.complete
        answer["replayed"] = len(recovery.events) if recovery is not None else 0
        return answer

    def _fit(self, events: list[str]) -> list[str]:
        """Those of ``events`` the socket does not follow yet; 1011 when they would take it over
        ``socket_max_subscriptions``."""
        new = [e for e in dict.fromkeys(events) if e not in self.subscriptions]
        limit = self.hub.max_subscriptions
        if len(self.subscriptions) + len(new) > limit:
            raise TotoException(ERROR_MALFORMED_REQUEST, f"A socket may subscribe to at most {limit} events.")
        return new

    def _register(self, events: list[str]) -> None:
        """Push ``events`` to the socket (those it does not follow yet)."""
        manager = EventManager.instance()
        for event in self._fit(events):
            self.subscriptions[event] = manager.register_handler(
                event, self._pusher(event), True, self.owner, persist=True, positioned=True
            )

    def _pusher(self, event: str) -> Callable[[Any, Position | None], None]:
        def push(data: Any, position: Position | None) -> None:
            held = self._held
            if held is not None:
                held.append((event, data, position))
            else:
                self._push(event, data, position)

        return push

    def _push(self, event: str, data: Any, position: Position | None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data}
        if position is not None:
            floor = self._floors.get(event)
            if floor is not None:
                if not position.follows(floor):
                    return  # pushed already, from the history
                del self._floors[event]
            frame["position"] = position_frame(position)
        self.send(frame, self.binary)

    # -- writing --------------------------------------------------------------------------------
    def send(self, payload: dict[str, Any], binary: bool = False) -> None:
        """Queue one message; a client that lets ``socket_max_queue`` pile up is closed (1013)."""
        if self.closed or self.ws_connection is None:
            return
        if self.queued >= self.hub.max_queue:
            log.warning("closing a slow consumer: %d messages waiting (socket_max_queue)", self.queued)
            self.close(CLOSE_TRY_AGAIN, "slow consumer: too many messages waiting")
            self._abort_soon()
            return
        serializer = self.hub.binary_serializer if binary else None
        if serializer is None:
            serializer, binary = self.hub.text_serializer, False
        try:
            data = serializer.encode(payload)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            log.error("socket answer could not be serialized: %s", exc)
            fallback = {"error": {"code": ERROR_SERVER, "value": "The result could not be serialized."}}
            if "id" in payload:
                fallback = {"id": payload["id"], **fallback}
            elif "event" in payload:
                return
            data = serializer.encode(fallback)
        out = self._out
        if out is None:
            stream = self.ws_connection.stream
            if stream is not None and not getattr(stream, "_read_buffer_size", 1):
                # Nothing more has arrived to answer in this tick: this answer leaves now.
                self.queued += 1
                self._write([frame_head(len(data), binary), data])
                return
            out = self._out = []
            asyncio.get_running_loop().call_soon(self._flush)
        out += (frame_head(len(data), binary), data)
        self.queued += 1

    def _flush(self) -> None:
        """Write the messages queued since the last flush, in one write: the answers and pushes
        of one loop tick leave together (at 50 calls in flight on one socket, one system call
        instead of 50, and no task a message as ``write_message`` makes). ``send`` queues only
        while the socket's stream holds more received bytes (more calls to answer in this
        tick); a lone answer, as with one call in flight a socket, is written at once."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._write(out)

    def _write(self, out: list[bytes]) -> None:
        """Write frames (heads and payloads), counted in ``queued`` until written."""
        connection = self.ws_connection
        count = len(out) // 2  # a head and a payload each
        stream = connection.stream if connection is not None else None
        if self.closed or connection is None or stream is None or connection.is_closing():
            self.queued -= count
            return
        try:
            future = stream.write(b"".join(out))
        except OSError:  # the stream closed (StreamClosedError)
            self.queued -= count
            return
        future.add_done_callback(lambda _: self._written(count))

    def _written(self, count: int) -> None:
        self.queued -= count

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close with ``code``: what was answered before goes out before the close frame."""
        self._flush()
        super().close(code, reason)

    def _abort_soon(self) -> None:
        """A slow consumer's close frame waits behind what it does not read: cut the TCP
        connection if the closing handshake has not ended in a moment."""

        def abort() -> None:
            connection = self.ws_connection
            if connection is not None and connection.stream is not None and not connection.stream.closed():
                connection.stream.close()

        asyncio.get_running_loop().call_later(1.0, abort)

    def send_message(self, data: Any, message_id: Any = None) -> None:
        """Write ``data`` to the client as is (``{"message_id", "data"}`` with ``message_id``)."""
        self.send({"message_id": message_id, "data": data} if message_id is not None else data, self.binary)

    def _unexpected(self, exc: BaseException, name: Any) -> TotoException:
        return error_for(exc, _where(name), self.server.debug, log)


class _Owner:
    """Stands for a socket where EventManager expects a request: finished once the socket closed."""

    __slots__ = ("socket",)

    def __init__(self, socket: TotoSocketHandler) -> None:
        self.socket = socket

    @property
    def _finished(self) -> bool:
        return self.socket.closed


def _where(name: Any) -> str:
    return f"socket call {name if isinstance(name, str) else '?'!r}"


def _malformed(text: str) -> dict[str, Any]:
    return {"code": ERROR_MALFORMED_REQUEST, "value": text}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# -- what methods receive as ``handler`` ---------------------------------------------------------


class SocketCall:
    """One socket message's call, as its method sees it (a ``CallContext``) and as the
    pipeline runs it (a ``pipeline.Call``): ``session``, ``connection`` (``.db``),
    ``server``, ``request`` (the handshake's), ``socket``, ``respond``,
    ``register_event_handler``, ``create_session``, ``db_connection``,
    ``retrieve_session``. Event handlers registered here live as long as the socket."""

    text_parameters = False
    headers_only = False
    pending_work: list[Pending[Any]] | None = None
    _db_connection: DBConnection | None = None
    # What a call starts with and most never change: class attributes, so a message does not
    # set them one by one (an instance attribute replaces one when it is written).
    session: Session | None = None
    session_error: TotoException | None = None
    locked_session: Session | None = None
    called: str | None = None
    batch_size: int | None = None
    close_reason: str | None = None
    opened_with: Session | None = None
    pending_reply: asyncio.Future[Any] | None = None

    def __init__(self, socket: TotoSocketHandler, message: dict[str, Any], data: bytes, serializer: Serializer) -> None:
        self.socket = socket
        self.server = socket.server
        self.connection = socket.connection
        self.request = socket.request
        self.message = message
        #: The message's bytes, and the format they were read in.
        self.data = data
        self.serializer = serializer
        self.active_methods: list[Method] = []

    @property
    def _finished(self) -> bool:
        return self.socket.closed

    @property
    def db(self) -> Any:
        return self.socket.db

    @property
    def db_connection(self) -> DBConnection:
        """The original's account and session calls (``toto.dbconnection``), as over HTTP."""
        if self._db_connection is None:
            self._db_connection = DBConnection(self)  # type: ignore[arg-type]
        return self._db_connection

    # -- what the pipeline asks of its call -----------------------------------------------------
    def where(self) -> str:
        return _where(self.called)

    def waiting(self) -> None:
        """The socket's close already tells every running call (``connection_closed``)."""

    async def before_callback(self, target: CallContext) -> None:
        if target is self:
            await self.settle()
            self.release_session()

    def release_session(self) -> None:
        locked = self.locked_session
        if locked is not None:
            self.locked_session = None
            self.server.sessions.release(locked)

    def open_session(self, session_id: str) -> Awaitable[None]:
        """``pipeline.open_session`` checked by the authenticator's message half on this
        message's signed bytes and its ``hmac`` member."""
        message = self.message
        found = self.serializer.split_signature(self.data, message)
        given, signed = found if found is not None else (None, b"")
        verify = self.socket.hub.authenticator.verify_message
        return pipeline.open_session(self, session_id, verify, message, signed, given)

    async def settle(self) -> None:
        """Persist the session's state; follow a login (the socket takes the new session)
        or a logout (the socket closes)."""
        session = self.session
        if session is not None:
            await session.flush()
        socket = self.socket
        if session is not None and session is not self.opened_with:
            socket.session_id = session.session_id
            socket.had_session = True
            self.opened_with = session
        elif session is None and self.opened_with is not None:
            socket.session_id = None
            self.close_reason = "session ended"

    # -- what methods receive ---------------------------------------------------------------------
    def respond(self, result: Any = None, error: Any = None) -> None:
        respond(self, result, error, _where(self.called), self.server.debug, log)

    def respond_raw(self, body: Any, content_type: str, finish: bool = True) -> None:
        raise TotoException(ERROR_SERVER, "respond_raw answers HTTP requests only, not socket calls")

    raw_respond = respond_raw

    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        """A new session, the call's (and the socket's once the call ends), made as over
        HTTP: usable at once from sync code, awaitable from async code."""
        session = self.db_connection.create_session(user_id, password, verify_password)
        self.release_session()
        self.session = session
        return session

    def retrieve_session(self, session_id: str | None = None) -> asyncio.Future[Session | None]:
        """The call's session, or (``session_id``) the session it names made the call's, checked
        against this message's signature as the socket's own session is
        (``@authenticated_with_parameter``): None when unknown or expired, 1008 when badly signed."""
        if session_id is None:
            done: asyncio.Future[Session | None] = asyncio.get_running_loop().create_future()
            done.set_result(self.session)
            return done
        return asyncio.ensure_future(self.open_named_session(session_id))

    async def open_named_session(self, session_id: str) -> Session | None:
        self.release_session()
        self.session = None
        self.session_error = None
        await self.open_session(session_id)
        # The call's session, not the socket's: the next call names its own again (as a link's over HTTP).
        self.opened_with = self.session
        error = self.session_error
        if self.session is None and error is not None and error.code != ERROR_INVALID_SESSION_ID:
            raise error
        return self.session

    def register_event_handler(
        self, event_name: str, handler: Any, run_on_main_loop: bool = True, deregister_on_finish: bool = False
    ) -> Any:
        """Call ``handler(args)`` on the next event ``event_name`` while the socket is open
        (once, as the original's socket handler did; ``toto.subscribe`` pushes every one)."""
        manager = EventManager.instance()
        sig = manager.register_handler(event_name, handler, run_on_main_loop, self.socket.owner)
        self.socket.registered_event_handlers.append(sig)
        return sig

    def deregister_event_handler(self, sig: Any) -> None:
        EventManager.instance().remove_handler(sig)
        handlers = self.socket.registered_event_handlers
        if sig in handlers:
            handlers.remove(sig)

    def connection_closed(self) -> None:
        connection_gone(self, self.active_methods, log)


class SocketBatchEntry(BatchEntryBase):
    """One entry of a socket batch as its method sees it (a ``CallContext``): its own
    ``respond``; the batch's session, socket and storage."""

    __slots__ = ()

    handler: SocketCall

    def __init__(self, batch: SocketCall) -> None:
        #: The batch's call (where ``account.*`` count password checks per message).
        super().__init__(batch)

    @property
    def headers_only(self) -> bool:
        return False

    @property
    def socket(self) -> TotoSocketHandler:
        return self.handler.socket

    def respond_raw(self, body: Any, content_type: str, finish: bool = True) -> None:
        raise TotoException(ERROR_SERVER, "respond_raw answers HTTP requests only, not socket calls")

    raw_respond = respond_raw

    def connection_closed(self) -> None:
        """The socket closed: a reply this entry's method still owes is cancelled."""
        connection_gone(self, (), log)
