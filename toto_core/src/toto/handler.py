"""The request path: what every transport hands each request to, and the handler methods receive.

A transport (``toto.transports``: Tornado's HTTP server by default, an ASGI or RSGI server
with ``--http``) parses HTTP and gives each request to ``TotoApplication.begin`` as a
request object (``handler.request``, the shape of Tornado's ``HTTPServerRequest`` on every
transport) and a ``ResponseWriter`` (how the answer's bytes leave). This is HTTP's face of
the one call sequence (``toto.pipeline``, which socket messages run too): size limits ->
parse -> resolve method -> ``pipeline.open_session`` (the authenticator's request half) ->
``pipeline.invoke`` / ``run_batch`` -> save state -> serialize -> sign -> write.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from tornado import httputil

from toto import pipeline
from toto.calls import BatchEntryBase, connection_gone, error_for, resolve_batch, respond
from toto.events import EventManager
from toto.exceptions import (
    ERROR_INVALID_SESSION_ID,
    ERROR_MALFORMED_REQUEST,
    ERROR_MISSING_METHOD,
    ERROR_NOT_FOUND,
    ERROR_SERVER,
    ERROR_SERVICE_UNAVAILABLE,
    ERROR_UNSUPPORTED_CONTENT_TYPE,
    ERROR_VERB_NOT_ALLOWED,
    TotoException,
)
from toto.http import Request, Route
from toto.lookup import Method
from toto.original.seed import NO_DEFAULT, SeedHandler
from toto.origins import callable_by_get
from toto.plugins import install_hint
from toto.redaction import redact_target
from toto.response import HttpResponse, ResponseHeaders, ResponseWriter

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.context import CallContext
    from toto.original.seed import Pending
    from toto.server import TotoServer
    from toto.sessions import Session
    from toto.websocket import SocketHub

log = logging.getLogger("toto.request")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_RAW = object()  # marks a response already written by respond_raw


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise TotoException(ERROR_MALFORMED_REQUEST, "Parameters must be UTF-8 text.") from None


def form_parameters(mime: str, arguments: dict[str, list[bytes]], files: dict[str, list[Any]]) -> dict[str, Any]:
    """A form's parameters in the original's shapes (PROTOCOL.md section 1): urlencoded, each
    field a list of its values; multipart, ``{"arguments": {...}, "files": {name: [upload]}}``."""
    fields = {name: [_text(x) for x in values] for name, values in arguments.items()}
    if mime == "application/x-www-form-urlencoded":
        return fields
    uploads = {
        name: [{"filename": f.filename, "body": f.body, "content_type": f.content_type} for f in entries]
        for name, entries in files.items()
    }
    return {"arguments": fields, "files": uploads}


def _arguments(arguments: dict[str, list[bytes]]) -> dict[str, Any]:
    """Query or form arguments: given once, a string; given several times, a list (compat)."""
    return {name: _text(v[0]) if len(v) == 1 else [_text(x) for x in v] for name, v in arguments.items()}


# -- serving HTTP ---------------------------------------------------------------------------


class TotoApplication:
    """The server's request path, shared by every transport: ``begin`` each request, feed it
    its body (``handler.data_received``), then ``handler.execute()``.

    Response headers every answer carries (Date, CORS) are built once a second, not
    once a request.
    """

    def __init__(self, server: TotoServer) -> None:
        self.toto_server = server
        root = "/" + server.options.root.strip("/")
        # The same mount rule web.Application applied: root, then an optional slash, then the method path.
        self.root_pattern = None if root == "/" else re.compile(re.escape(root.rstrip("/")) + r"/?(.*)$")
        self._date_second = -1
        self._defaults: dict[str, str] = {}
        self.routes: dict[str, Route] = server.routes
        self.max_request_line = server.max_request_line
        self.max_header_size = server.max_header_size
        #: The WebSocket endpoint (``use_web_sockets``), or None.
        self.sockets: SocketHub | None = None
        if server.options.use_web_sockets:
            # The socket face (and Tornado's WebSocket code) loads only for a server that serves sockets.
            from toto.websocket import SocketHub

            self.sockets = server.socket_hub = SocketHub(server)

    def default_headers(self) -> dict[str, str]:
        now = int(time.time())
        if now != self._date_second:
            server = self.toto_server
            defaults = {"Date": formatdate(now, usegmt=True), "Access-Control-Allow-Origin": server.allow_origin}
            if server.expose_headers:
                defaults["Access-Control-Expose-Headers"] = server.expose_headers
            self._defaults, self._date_second = defaults, now
        return self._defaults

    def method_path(self, path: str) -> str | None:
        """The part of the URL path that names a method, or None when it is outside ``root``."""
        if self.root_pattern is None:
            return path[1:] if path.startswith("/") else None
        found = self.root_pattern.match(path)
        return found.group(1) if found else None

    def begin(self, request: Any, writer: ResponseWriter, path: str | None, head_size: int) -> TotoHandler:
        """A handler for ``request`` (whose method path ``method_path`` gave as ``path``),
        checked before its body is read: a head over the limits (``head_size``: the bytes of
        its header lines), a path outside ``root``, a verb the path does not serve and a
        declared body over ``max_body_size`` are answered at once (the handler is then
        ``_finished``)."""
        handler = TotoHandler(self, request, writer, server=self.toto_server)
        if len(request.uri or "") > self.max_request_line or head_size > self.max_header_size:
            handler._refuse_head()
            return handler
        route = self.routes.get(path.strip("/")) if path is not None and self.routes else None
        if path is None:
            handler._observe_early()
            handler.send_error(404)
        elif route is not None:
            if request.method not in route.methods:
                handler._observe_early()
                handler.send_error(405)
            else:
                handler._route = route
                handler._path = path
                handler._check_length()
        elif request.method not in TotoHandler.SUPPORTED_METHODS:
            handler._observe_early()
            handler.send_error(405)
        else:
            handler._path = path
            handler._check_length()
        return handler


class TotoHandler(HttpResponse, SeedHandler):
    """Serves one Toto request. Methods receive it as ``handler``.

    Useful to methods: ``handler.session``, ``handler.connection.db``,
    ``handler.respond(result=..., error=...)``, ``handler.respond_raw(body, content_type)``,
    ``handler.register_event_handler(name, fn)``, ``handler.create_session(user_id)``,
    ``handler.request`` (Tornado's ``HTTPServerRequest``), and the response calls of a
    Tornado ``RequestHandler`` that raw answers need: ``set_header``, ``add_header``,
    ``clear_header``, ``set_status``, ``get_status``, ``write``, ``flush``, ``finish``;
    and what the original's method code uses (``toto.original.seed``): ``get_argument(s)``,
    cookies, ``redirect``, ``settings``, ``db_connection``, ``retrieve_session``...
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
    #: The answer's envelope once written (read by the access log).
    _payload: dict[str, Any] | None = None
    #: With request hooks: when this request started, until toto_request_finished is called.
    _observed_since: float | None = None
    #: Parameters came as query or form text, so typed methods may read "1" as 1 (toto.validation).
    text_parameters = False
    #: The request was signed as toto.js signs (True), as UTF-8 (False), or not checked (None).
    _toto_js: bool | None = None
    #: Storage calls seed code made without awaiting them (toto.dbconnection); None until one is made.
    pending_work: list[Pending[Any]] | None = None
    #: A form post's fields (``get_argument`` reads them with the query's).
    _form_arguments: dict[str, list[bytes]] | None = None

    #: The transport asked to tell this handler when the client goes away (``ResponseWriter.watch``).
    _watching = False
    #: The session cookie may name this request's session (not for a JSONP call: ``_call_one``).
    _cookie_allowed = True

    # What a request starts with and most never change: class attributes, so a request does
    # not set them one by one (an instance attribute replaces one when it is written).
    _finished = False
    _headers_written = False
    _closed = False
    _status_code = 200
    _reason = "OK"
    _path = ""
    _route: Route | None = None
    session: Session | None = None
    headers_only = False
    _size = 0
    _refused = False
    _response_type: str | None = None  # the content type as the client named it
    pending_reply: asyncio.Future[Any] | None = None
    locked_session: Session | None = None
    #: Why the session the request named is not this request's (1007, 1008, 1015).
    session_error: TotoException | None = None
    #: The session cookie named the request's session (so its end clears the cookie).
    _cookie_named = False
    # What toto_request_finished reports: the method called, a batch's size, the error answered.
    called: str | None = None
    batch_size: int | None = None
    _error: TotoException | None = None

    def __init__(
        self, application: TotoApplication, request: httputil.HTTPServerRequest, writer: ResponseWriter, **kwargs: Any
    ) -> None:
        self.application = application
        self.request = request
        self._writer = writer
        self._write_buffer: list[bytes] = []
        self._headers = ResponseHeaders(application.default_headers())
        self.initialize(**kwargs)
        if self.server.cookies is not None:
            self.server.cookies.cors(self)

    def initialize(self, server: TotoServer) -> None:
        self.server = server
        self.connection = server.connection
        self.registered_event_handlers: list[Any] = []
        self._chunks: list[bytes] = []
        self._response_serializer = server.default_serializer
        self.active_methods: list[Method] = []
        server.in_flight.add(self)

    # -- reading ----------------------------------------------------------------------
    def _check_length(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                self.refuse(400, TotoException(ERROR_MALFORMED_REQUEST, "Malformed Content-Length"))
            elif size > self.server.max_body_size:
                self.refuse(413, self._too_large())

    def _refuse_head(self) -> None:
        """414 for a request target over ``max_request_line``, else 431 for headers over
        ``max_header_size``; the connection closes after the answer."""
        server = self.server
        if len(self.request.uri or "") > server.max_request_line:
            limit = server.max_request_line
            self.refuse(
                414,
                TotoException(ERROR_MALFORMED_REQUEST, f"Request target longer than max_request_line ({limit} bytes)"),
            )
        else:
            limit = server.max_header_size
            self.refuse(
                431,
                TotoException(ERROR_MALFORMED_REQUEST, f"Request headers larger than max_header_size ({limit} bytes)"),
            )

    def _too_large(self) -> TotoException:
        limit = self.server.max_body_size
        return TotoException(ERROR_MALFORMED_REQUEST, f"Request body is larger than max_body_size ({limit} bytes)")

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > self.server.max_body_size:
            self._chunks.clear()
            self.refuse(413, self._too_large())
            return
        self._chunks.append(chunk)

    def refuse(self, status: int, error: TotoException) -> None:
        """Answer before the body is read; Tornado then closes the connection instead of reading on."""
        self._refused = True
        self._error = error
        self._observe_early()
        self.set_status(status)
        # In the type the client reads: the request's, or the one Accept prefers (else JSON).
        mime = self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        request_serializer = self.server.serializers.get(mime)
        if request_serializer is not None:
            self._response_serializer = request_serializer
            self._response_type = mime
        self._pick_response_serializer(request_serializer)
        serializer = self._response_serializer
        self.set_header("Content-Type", self._response_type or serializer.content_types[0])
        self._headers["Connection"] = "close"  # the body is not read: the connection cannot carry another request
        self._payload = {"error": error.to_dict()}
        self._finish(serializer.encode(self._payload))

    def _observe_early(self) -> None:
        """A request answered before it runs (404, 405, 413, 431...) still reaches the request
        hooks, so metrics and traces see what was refused."""
        if self.server.request_hooks and self._observed_since is None:
            self._observed_since = pipeline.observe_started(self)

    @property
    def payload(self) -> dict[str, Any] | None:
        """The answer's envelope once written (the access log reads its error codes)."""
        return self._payload

    def called_name(self) -> str:
        """What the request asked for, as the access log names it when no method ran: a
        route's ``/path``, else the method name its path gives (``-`` for none)."""
        if self._route is not None:
            return "/" + self._route.path
        return self._path.strip("/").replace("/", ".") or "-"

    @property
    def finished(self) -> bool:
        """The answer is written (a refusal before the body, too): a face stops feeding it."""
        return self._finished

    async def execute(self) -> None:
        """Run the request's HTTP verb, between the request hooks when plugins implement them."""
        if self._route is None and self.server.request_hooks:
            await self._execute_observed()
        else:
            await self._serve()

    async def _execute_observed(self) -> None:
        started = self._observed_since = pipeline.observe_started(self)
        try:
            await self._serve()
        finally:
            if self._observed_since is not None:  # ended without an answer: the client went away
                self._report_finished(499, started)

    def _report_finished(self, status: int, started: float) -> None:
        self._observed_since = None
        pipeline.observe_finished(self, status, self._error, started)

    async def _serve(self) -> None:
        """Anything that escapes the verb is a 500 in the protocol's shape."""
        try:
            path = self._path
            if "%" in path:
                try:
                    path = unquote_to_bytes(path).decode("utf-8")
                except UnicodeDecodeError:
                    self._answer_error(TotoException(ERROR_MALFORMED_REQUEST, "The URL path must be UTF-8."))
                    return
            if self._route is not None:
                await self._serve_route(self._route)
                return
            verb = self.request.method
            if verb == "POST":
                await self.post(path)
            elif verb == "GET":
                await self.get(path)
            elif verb == "HEAD":
                await self.head(path)
            else:
                self.options(path)
        except Exception as exc:
            self.log_exception(type(exc), exc, exc.__traceback__)
            if not self._finished:
                self.send_error(500)

    async def _serve_route(self, route: Route) -> None:
        """Answer a fixed path (``toto_register_routes``) with what its handler returns."""
        req = self.request
        chunks = self._chunks
        request = Request(
            method=req.method or "GET",
            path=req.path,
            query=req.query,
            headers=req.headers,
            body=chunks[0] if len(chunks) == 1 else b"".join(chunks),
            remote_ip=req.remote_ip or "",
            route_path=route.path,
        )
        response = route.handler(request)
        if inspect.isawaitable(response):
            response = await response
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.finish(response.body)

    # -- HTTP verbs ---------------------------------------------------------------------
    async def post(self, path: str) -> None:
        if self._finished:
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.request.body = body
        try:
            content_type = self.request.headers.get("Content-Type", "application/json")
            mime = content_type.split(";", 1)[0].strip().lower() or "application/json"
            if mime in _FORM_TYPES:
                arguments: dict[str, list[bytes]] = {}
                files: dict[str, list[httputil.HTTPFile]] = {}
                try:
                    httputil.parse_body_arguments(content_type, body, arguments, files, self.request.headers)
                except httputil.HTTPInputError as exc:  # found by schemathesis: multipart without a boundary
                    raise TotoException(ERROR_MALFORMED_REQUEST, f"Malformed form body: {_brief(exc)}") from None
                parameters = form_parameters(mime, arguments, files)
                self._form_arguments = arguments
                self.text_parameters = True
                self._pick_response_serializer(None)
                await self._call_one(path, None, parameters, body)
                return
            serializer = self.server.serializers.get(mime)
            if serializer is None:
                raise TotoException(
                    ERROR_UNSUPPORTED_CONTENT_TYPE,
                    f"Unsupported content type {mime!r}; {install_hint(mime)}"
                    if mime in _KNOWN_TYPES
                    else f"Unsupported content type {mime!r}",
                )
            self._response_serializer = serializer
            self._response_type = mime
            self._pick_response_serializer(serializer)
            try:
                request = serializer.decode(body) if body else {}
            except TotoException:
                raise
            except (ValueError, TypeError, RecursionError, UnicodeDecodeError, OverflowError) as exc:
                raise TotoException(ERROR_MALFORMED_REQUEST, f"Malformed request body: {_brief(exc)}") from None
            if not isinstance(request, dict):
                raise TotoException(ERROR_MALFORMED_REQUEST, "The request body must be an object.")
            if "batch" in request:
                await self._call_batch(request["batch"], body)
            else:
                parameters = request["parameters"] if "parameters" in request else request
                await self._call_one(path, request.get("method"), parameters, body)
        except TotoException as exc:
            self._answer_error(exc)
        except Exception as exc:
            self._answer_error(self._unexpected(exc))

    async def get(self, path: str) -> None:
        try:
            self._pick_response_serializer(None)
            self.text_parameters = True
            await self._call_one(path, None, _arguments(self.request.query_arguments), b"")
        except TotoException as exc:
            self._answer_error(exc)
        except Exception as exc:
            self._answer_error(self._unexpected(exc))

    async def head(self, path: str) -> None:
        self.headers_only = True
        await self.get(path)

    def options(self, path: str) -> None:
        allowed = {"x-toto-hmac", "x-toto-nonce", "x-toto-session-id", "x-toto-timestamp", "content-type", "origin"}
        requested = self.request.headers.get("Access-Control-Request-Headers")
        if requested:
            allowed.update(h.strip().lower() for h in requested.split(",") if h.strip())
        self.set_header("Access-Control-Allow-Headers", ", ".join(sorted(allowed)))
        self.set_header("Access-Control-Allow-Methods", "POST, GET, HEAD, OPTIONS")
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)
        self.finish()

    def _pick_response_serializer(self, request_serializer: Any) -> None:
        """Answer in the request's type unless ``Accept`` prefers another installed one.

        The highest ``q`` among installed types wins; the request's own type wins a
        tie; ``q=0`` is never chosen. Wildcards and unknown types name nothing, so a
        browser's ``*/*`` keeps the request's type (JSON for GET and form posts).
        """
        accept = self.request.headers.get("Accept")
        if not accept or accept == "*/*":
            return
        serializers = self.server.serializers
        best = None
        best_q = 0.0
        best_type = ""
        for part in accept.split(","):
            mime, _, params = part.partition(";")
            mime = mime.strip().lower()
            candidate = serializers.get(mime)
            if candidate is None:
                continue
            q = _quality(params) if params else 1.0
            if q > best_q or (q == best_q and candidate is request_serializer and best is not request_serializer):
                best, best_q, best_type = candidate, q, mime
        if best is not None:
            self._response_serializer = best
            self._response_type = best_type

    # -- sessions -----------------------------------------------------------------------
    def _open_session(self, body: bytes, session_id: str | None = None) -> Awaitable[None] | None:
        """``pipeline.open_session`` of the session the request names (or ``session_id``),
        checked by the authenticator's request half; None when it names none.

        A request that names no session costs no storage round trip (and no coroutine).
        The session cookie names one only when ``_cookie_allowed`` and the request may use
        it (``CookieSessions.session_id``)."""
        server = self.server
        named = session_id is not None
        if not named:
            session_id = self.request.headers.get("x-toto-session-id")
        if not session_id:
            if server.cookies is None or not self._cookie_allowed:
                return None
            session_id = server.cookies.session_id(self)
            if not session_id:
                return None
            self._cookie_named = True
        authenticator = server.authenticator
        # A session named by a parameter (@authenticated_with_parameter) from a link, which
        # can send neither body nor headers, where the scheme allows it (Authenticator.unsigned_links).
        if named and not body and authenticator.unsigned_links and "x-toto-hmac" not in self.request.headers:
            return pipeline.open_session(self, session_id, None)
        return pipeline.open_session(self, session_id, authenticator.verify_request, body)

    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        """Open a new session for ``user_id`` (None: anonymous) and make it this request's.

        Usable at once from sync code (``handler.create_session(uid).session_id``) and
        awaitable from async code (``await handler.create_session(uid)``); the storage
        write (and the password check when ``password`` is given) finishes before the
        answer goes out, and its failure is the answer."""
        session = self.db_connection.create_session(user_id, password, verify_password)
        self.release_session()
        self.session = session
        return session

    async def open_named_session(self, session_id: str) -> Session | None:
        """Make ``session_id`` this request's session (``retrieve_session``): None when it is
        unknown or expired, as the original's; 1008 when the request's signature does not
        match it, as the original checked with ``hmac_enabled``."""
        self.release_session()
        self.session = None
        self.session_error = None
        opening = self._open_session(self.request.body or b"", session_id)
        if opening is not None:
            await opening
        error = self.session_error
        if self.session is None and error is not None and error.code != ERROR_INVALID_SESSION_ID:
            raise error
        return self.session

    def release_session(self) -> None:
        session = self.locked_session
        if session is not None:
            self.locked_session = None
            self.server.sessions.release(session)

    # -- invoking -----------------------------------------------------------------------
    def _method_name(self, path: str, body_method: Any) -> Any:
        select = self.server.method_select
        if path and select != "parameter":
            return path.strip("/").replace("/", ".")
        if select == "url":
            raise TotoException(ERROR_MISSING_METHOD, "Missing method.")
        return body_method

    async def _call_one(self, path: str, body_method: Any, parameters: Any, body: bytes) -> None:
        method = self.server.methods.resolve(self._method_name(path, body_method))
        self.called = method.name
        if self.request.method in ("GET", "HEAD") and not callable_by_get(method.name):
            self.set_header("Allow", "POST")
            raise TotoException(ERROR_VERB_NOT_ALLOWED, f"{method.name} is served by POST only, never by GET.")
        if method.jsonp is not None and isinstance(parameters, dict) and parameters.get(method.jsonp):
            # A JSONP answer is script any site may include: it never runs with the cookie's session.
            self._cookie_allowed = False
        opening = self._open_session(body)
        if opening is not None:
            await opening
        try:
            result = pipeline.invoke(self, self, method, parameters)
            if isinstance(result, pipeline.Waiting):
                result = await result.awaitable
            if result is _RAW:
                return
            if self.session is not None:
                await self.session.flush()
        finally:
            self.release_session()
        payload = {} if result is None else {"result": result}
        self._answer(payload)

    async def _call_batch(self, batch: Any, body: bytes) -> None:
        methods: dict[str, Method | TotoException] = resolve_batch(self.server.methods, batch, self.server.max_batch)
        self.batch_size = len(batch)
        opening = self._open_session(body)
        if opening is not None:
            await opening
        try:
            answers = await pipeline.run_batch(self, methods, batch, lambda key: BatchEntry(self, key))
            if self.session is not None:
                await self.session.flush()
        finally:
            self.release_session()
        self._answer({"batch": answers})

    def waiting(self) -> None:
        """A method waits: from now on the transport watches for the client going away."""
        if not self._watching and not self._finished:
            self._watching = True
            self._writer.watch(self.on_connection_close)

    async def before_callback(self, target: CallContext) -> None:
        if target is self and self.session is not None:
            await self.session.flush()
            self.release_session()

    # -- answering ----------------------------------------------------------------------
    def respond(self, result: Any = None, error: Any = None) -> None:
        """Answer a callback-style call: ``result``, or ``error`` (a TotoException or any exception)."""
        respond(self, result, error, self.where(), self.server.debug, log)

    def respond_raw(self, body: bytes | str, content_type: str, finish: bool = True) -> None:
        """Write ``body`` as is with ``content_type``, bypassing the Toto envelope (and signing)."""
        self.set_header("Content-Type", content_type)
        if not self.headers_only:
            self.write(body)
        if finish:
            self.finish()
            reply = self.pending_reply
            if reply is None:
                reply = self.pending_reply = asyncio.get_running_loop().create_future()
            if not reply.done():
                reply.set_result(_RAW)

    raw_respond = respond_raw

    def _answer(self, payload: dict[str, Any], status: int = 200) -> None:
        if self._finished:
            return
        session = self.session
        if session is not None:
            payload["session"] = session.to_response()
        if self.server.cookies is not None:
            # The cookie's session ended here: signed out, or unknown or expired (1007).
            error = self.session_error
            ended = self._cookie_named and (error is None or error.code == ERROR_INVALID_SESSION_ID)
            self.server.cookies.answer(self, session, ended)
        self._payload = payload
        serializer = self._response_serializer
        try:
            body = serializer.encode(payload)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            log.error("answer of %s could not be serialized: %s", self.where(), exc)
            payload = {"error": {"code": ERROR_SERVER, "value": "The result could not be serialized."}}
            if session is not None:
                payload["session"] = session.to_response()
            body = serializer.encode(payload)
        if status != 200:
            self.set_status(status)
        self._headers["Content-Type"] = self._response_type or serializer.content_types[0]
        if session is not None:
            self.server.authenticator.sign_response(self, session, body)
        self._finish(body)

    def _answer_error(self, exc: TotoException) -> None:
        self._error = exc
        if exc.code == ERROR_SERVICE_UNAVAILABLE:
            log.warning("%s: %s", self.where(), exc.value)
            # The call did not run: a client may send it again, after this long (PROTOCOL.md section 7).
            self._headers["Retry-After"] = "1"
        self._answer({"error": exc.to_dict()}, exc.status)

    def where(self) -> str:
        return f"{self.request.method} {redact_target(self.request.uri)}"

    def _unexpected(self, exc: BaseException) -> TotoException:
        return error_for(exc, self.where(), self.server.debug, log)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Transport-level errors (404, 405, unexpected failures) in the protocol's shape, never a page.
        if status_code == 404:
            code, value = ERROR_NOT_FOUND, "Not found: the path is outside this server's root."
        elif status_code == 405:
            code, value = ERROR_VERB_NOT_ALLOWED, f"HTTP verb {self.request.method} is not allowed here."
        else:
            code, value = ERROR_SERVER, self._reason or "error"
        if self._error is None:
            self._error = TotoException(code, value)
        error = {"code": code, "value": value}
        self._headers["Content-Type"] = "application/json"
        self._finish(self.server.default_serializer.encode({"error": error}))

    # -- events and lifecycle -----------------------------------------------------------
    def register_event_handler(
        self, event_name: str, handler: Any, run_on_main_loop: bool = True, deregister_on_finish: bool = False
    ) -> Any:
        """Call ``handler(args)`` on the next event ``event_name`` while this request is open.

        As in the original, it fires once and never after the request finished. The
        registration is dropped when the request finishes or its connection closes, whatever
        ``deregister_on_finish`` says (the original kept it until the next such event unless
        told; dropping it at once is the same to the method and leaves nothing behind). A
        handler that outlives requests is ``EventManager.instance().register_handler(...,
        persist=True)``.
        """
        sig = EventManager.instance().register_handler(event_name, handler, run_on_main_loop, self)
        self.registered_event_handlers.append(sig)
        return sig

    def deregister_event_handler(self, sig: Any) -> None:
        EventManager.instance().remove_handler(sig)
        if sig in self.registered_event_handlers:
            self.registered_event_handlers.remove(sig)

    def on_connection_close(self) -> None:
        """The client went away: tell the running methods, stop waiting for an answer, clean up."""
        if self._closed:
            return
        self._closed = True
        connection_gone(self, self.active_methods, log)
        self.on_finish()

    def on_finish(self) -> None:
        server = self.server
        server.in_flight.discard(self)
        if server.access_log is not None:
            server.access_log.record(self, closed=not self._finished)
        if self.registered_event_handlers:
            manager = EventManager.instance()
            for sig in self.registered_event_handlers:
                manager.remove_handler(sig)
            self.registered_event_handlers.clear()
        self.release_session()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, asyncio.CancelledError):
            return
        log.error("uncaught exception in %s", self.where(), exc_info=(typ, value, tb))


class BatchEntry(BatchEntryBase):
    """One entry of an HTTP batch as its method sees it (a ``CallContext``): its own
    ``respond``; the request's session, server, storage and seed surface."""

    __slots__ = ("request_key",)

    handler: TotoHandler

    def __init__(self, handler: TotoHandler, request_key: str) -> None:
        #: The batch's request (where ``account.*`` count password checks per request).
        super().__init__(handler)
        self.request_key = request_key

    @property
    def headers_only(self) -> bool:
        return self.handler.headers_only

    @property
    def settings(self) -> dict[str, Any]:
        return self.handler.settings

    @property
    def transaction_id(self) -> Any:
        return self.handler.transaction_id

    def respond_raw(self, body: Any, content_type: str, finish: bool = True) -> None:
        raise TotoException(ERROR_SERVER, "respond_raw cannot answer one entry of a batch")

    raw_respond = respond_raw

    # The seed surface (toto.original.seed), on the batch's request.
    def get_argument(self, name: str, default: Any = NO_DEFAULT, strip: bool = True) -> Any:
        return self.handler.get_argument(name, default, strip)

    def get_arguments(self, name: str, strip: bool = True) -> list[str]:
        return self.handler.get_arguments(name, strip)

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        return self.handler.get_cookie(name, default)

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = 31) -> bytes | None:
        return self.handler.get_secure_cookie(name, value, max_age_days)

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        self.handler.set_cookie(name, value, *args, **kwargs)

    def set_secure_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        self.handler.set_secure_cookie(name, value, *args, **kwargs)

    def clear_cookie(self, name: str, path: str = "/", domain: str | None = None) -> None:
        self.handler.clear_cookie(name, path, domain)

    def set_header(self, name: str, value: Any) -> None:
        self.handler.set_header(name, value)

    def add_header(self, name: str, value: Any) -> None:
        self.handler.add_header(name, value)


def _quality(params: str) -> float:
    """The ``q`` of one Accept entry's parameters (1 when absent, 0 when unreadable)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _brief(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


_KNOWN_TYPES = ("application/msgpack", "application/x-msgpack", "application/bson")
