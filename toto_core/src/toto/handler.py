"""The request path: what every transport hands each request to, and the handler methods receive.

A transport (``toto.transports``: Tornado's HTTP server by default, an ASGI or RSGI server
with ``--http``) parses HTTP and gives each request to ``TotoApplication.begin`` as a
request object (``handler.request``, the shape of Tornado's ``HTTPServerRequest`` on every
transport) and a ``ResponseWriter`` (how the answer's bytes leave). Everything between is
here, and reads top to bottom: size limits -> parse -> resolve method -> load session ->
verify signature -> invoke -> save state -> serialize -> sign -> write.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http.client import responses
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes

from tornado import httputil

from toto.calls import connection_gone, error_for, fail_invocation, resolve_batch, respond
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
from toto.origins import callable_by_get
from toto.plugins import install_hint
from toto.redaction import redact_target
from toto.seed import SeedHandler

if TYPE_CHECKING:
    from toto.dbconnection import Pending
    from toto.server import TotoServer
    from toto.sessions import Session
    from toto.websocket import SocketHub

log = logging.getLogger("toto.request")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_RAW = object()  # marks a response already written by respond_raw
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f]")


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


class ResponseHeaders(dict):  # type: ignore[type-arg]
    """Response headers by canonical name, in the shape ``HTTP1Connection.write_headers`` reads.

    Built by copying a ready dict, which is cheaper than ``HTTPHeaders``; headers added
    with ``add_header`` (several values of one name) follow the others.
    """

    extra: list[tuple[str, str]] | None = None

    def get_all(self) -> Any:
        if self.extra:
            return [*self.items(), *self.extra]
        return self.items()


_canonical_names: dict[str, str] = {}


def canonical_header(name: str) -> str:
    """``content-type`` -> ``Content-Type`` (cached; header names are case-insensitive)."""
    found = _canonical_names.get(name)
    if found is None:
        found = "-".join(part.capitalize() for part in name.split("-"))
        if len(_canonical_names) < 1000:
            _canonical_names[name] = found
    return found


def header_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, int):
        return str(value)
    elif isinstance(value, datetime.datetime):
        return httputil.format_timestamp(value)
    else:
        raise TypeError(f"Unsupported header value {value!r}")
    if _UNSAFE_HEADER.search(text):
        raise ValueError("Unsafe header value: control characters are not allowed")
    return text


class ResponseWriter(Protocol):
    """What a transport gives the request path to send one answer (``toto.transports``).

    ``start`` sends the status line, headers and the first bytes of the body (nothing
    of the body for HEAD: the path passes ``b""`` then); ``last`` says the answer ends
    there. ``send`` sends more of a body that was started without ``last`` (``flush``).
    Both return what to await for the bytes to leave, or None when nothing need be.
    ``watch(callback)``: call ``callback`` once if the client goes away before the answer
    ends (None: stop watching); the path asks only of answers that wait on something.
    """

    def start(self, status: int, reason: str, headers: ResponseHeaders, chunk: bytes, last: bool) -> Any: ...

    def send(self, chunk: bytes, last: bool) -> Any: ...

    def watch(self, callback: Callable[[], None] | None) -> None: ...


class TotoApplication:
    """The server's request path, shared by every transport: ``begin`` each request, feed it
    its body (``handler.data_received``), then ``handler._execute()``.

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


class TotoHandler(SeedHandler):
    """Serves one Toto request. Methods receive it as ``handler``.

    Useful to methods: ``handler.session``, ``handler.connection.db``,
    ``handler.respond(result=..., error=...)``, ``handler.respond_raw(body, content_type)``,
    ``handler.register_event_handler(name, fn)``, ``handler.create_session(user_id)``,
    ``handler.request`` (Tornado's ``HTTPServerRequest``), and the response calls of a
    Tornado ``RequestHandler`` that raw answers need: ``set_header``, ``add_header``,
    ``clear_header``, ``set_status``, ``get_status``, ``write``, ``flush``, ``finish``;
    and what the original's method code uses (``toto.seed``): ``get_argument(s)``,
    cookies, ``redirect``, ``settings``, ``db_connection``, ``retrieve_session``...
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
    #: The answer's envelope once written (read by the access log).
    _payload: dict[str, Any] | None = None
    #: With request hooks: when this request started, until toto_request_finished is called.
    _observed_since: float | None = None
    #: Parameters came as query or form text, so typed methods may read "1" as 1 (toto.validation).
    _text_parameters = False
    #: The request was signed as toto.js signs (True), as UTF-8 (False), or not checked (None).
    _toto_js: bool | None = None
    #: Storage calls seed code made without awaiting them (toto.dbconnection); None until one is made.
    _work: list[Pending[Any]] | None = None
    #: A form post's fields (``get_argument`` reads them with the query's).
    _form_arguments: dict[str, list[bytes]] | None = None

    #: The transport asked to tell this handler when the client goes away (``ResponseWriter.watch``).
    _watching = False
    #: The session cookie may name this request's session (not for a JSONP call: ``_call_one``).
    _cookie_allowed = True

    def __init__(
        self, application: TotoApplication, request: httputil.HTTPServerRequest, writer: ResponseWriter, **kwargs: Any
    ) -> None:
        self.application = application
        self.request = request
        self._writer = writer
        self._finished = False
        self._headers_written = False
        self._closed = False
        self._status_code = 200
        self._reason = "OK"
        self._write_buffer: list[bytes] = []
        self._headers = ResponseHeaders(application.default_headers())
        self._path = ""
        self._route: Route | None = None
        self.initialize(**kwargs)
        if self.server.cookies is not None:
            self.server.cookies.cors(self)

    def initialize(self, server: TotoServer) -> None:
        self.server = server
        self.connection = server.connection
        self.session: Session | None = None
        self.headers_only = False
        self.registered_event_handlers: list[Any] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._refused = False
        self._response_serializer = server.default_serializer
        self._response_type: str | None = None  # the content type as the client named it
        self._active_methods: list[Method] = []
        self._reply: asyncio.Future[Any] | None = None
        self._locked_session: Session | None = None
        #: Why the session the request named is not this request's (1007, 1008, 1015).
        self._session_error: TotoException | None = None
        #: The session cookie named the request's session (so its end clears the cookie).
        self._cookie_named = False
        # What toto_request_finished reports: the method called, a batch's size, the error answered.
        self._called: str | None = None
        self._batch_size: int | None = None
        self._error: TotoException | None = None
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
                self._refuse(400, TotoException(ERROR_MALFORMED_REQUEST, "Malformed Content-Length"))
            elif size > self.server.max_body_size:
                self._refuse(413, self._too_large())

    def _refuse_head(self) -> None:
        """414 for a request target over ``max_request_line``, else 431 for headers over
        ``max_header_size``; the connection closes after the answer."""
        server = self.server
        if len(self.request.uri or "") > server.max_request_line:
            limit = server.max_request_line
            self._refuse(
                414,
                TotoException(ERROR_MALFORMED_REQUEST, f"Request target longer than max_request_line ({limit} bytes)"),
            )
        else:
            limit = server.max_header_size
            self._refuse(
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
            self._refuse(413, self._too_large())
            return
        self._chunks.append(chunk)

    def _refuse(self, status: int, error: TotoException) -> None:
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
        self.finish(serializer.encode(self._payload))

    def _observe_early(self) -> None:
        """A request answered before it runs (404, 405, 413, 431...) still reaches the request
        hooks, so metrics and traces see what was refused."""
        if self.server.request_hooks and self._observed_since is None:
            self._observed_since = time.perf_counter()
            try:
                self.server.hook.toto_request_started(handler=self)
            except Exception:
                log.exception("a toto_request_started hook failed")

    async def _execute(self) -> None:
        """Run the request's HTTP verb, between the request hooks when plugins implement them."""
        if self._route is None and self.server.request_hooks:
            await self._execute_observed()
        else:
            await self._serve()

    async def _execute_observed(self) -> None:
        started = self._observed_since = time.perf_counter()
        try:
            self.server.hook.toto_request_started(handler=self)
        except Exception:
            log.exception("a toto_request_started hook failed")
        try:
            await self._serve()
        finally:
            if self._observed_since is not None:  # ended without an answer: the client went away
                self._report_finished(499, started)

    def _report_finished(self, status: int, started: float) -> None:
        """toto_request_finished, called once the answer is decided and before its bytes go out,
        so what plugins count survives a process that dies right after answering."""
        self._observed_since = None
        error = self._error
        try:
            self.server.hook.toto_request_finished(
                handler=self,
                method=self._called,
                batch=self._batch_size,
                status=status,
                error=None if error is None else error.to_dict(),
                seconds=time.perf_counter() - started,
            )
        except Exception:
            log.exception("a toto_request_finished hook failed")

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

    # -- writing (the RequestHandler calls raw answers use) -----------------------------
    def set_header(self, name: str, value: Any) -> None:
        self._headers[canonical_header(name)] = header_value(value)

    def add_header(self, name: str, value: Any) -> None:
        headers = self._headers
        if headers.extra is None:
            headers.extra = []
        headers.extra.append((canonical_header(name), header_value(value)))

    def clear_header(self, name: str) -> None:
        self._headers.pop(canonical_header(name), None)

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        self._status_code = status_code
        self._reason = reason if reason is not None else responses.get(status_code, "Unknown")

    def get_status(self) -> int:
        return self._status_code

    def write(self, chunk: bytes | str | dict[str, Any]) -> None:
        if self._finished:
            raise RuntimeError("Cannot write() after finish()")
        if isinstance(chunk, dict):
            chunk = json.dumps(chunk).replace("</", "<\\/")
            self._headers["Content-Type"] = "application/json; charset=UTF-8"
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        elif not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() only accepts bytes, str and dict, not {type(chunk).__name__}")
        self._write_buffer.append(bytes(chunk))

    def flush(self) -> Awaitable[None]:
        """Send what was written so far (the headers first; then the body is chunked)."""
        return _awaitable(self._send(False))

    def _send(self, last: bool) -> Any:
        buffer = self._write_buffer
        chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        self._write_buffer = []
        head = self.request.method == "HEAD"
        if not self._headers_written:
            self._headers_written = True
            return self._writer.start(self._status_code, self._reason, self._headers, b"" if head else chunk, last)
        if head and not last:
            return None
        return self._writer.send(b"" if head else chunk, last)

    def finish(self, chunk: bytes | str | dict[str, Any] | None = None) -> Awaitable[None]:
        """End the response (writing ``chunk`` first)."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        if not self._headers_written:
            status = self._status_code
            if status in (204, 304) or 100 <= status < 200:
                if self._write_buffer:
                    raise RuntimeError(f"Cannot send body with status code HTTP{status}")
                for name in ("Content-Encoding", "Content-Language", "Content-Type"):
                    self._headers.pop(name, None)
            elif "Content-Length" not in self._headers:
                self._headers["Content-Length"] = str(sum(len(part) for part in self._write_buffer))
        if self._observed_since is not None:
            self._report_finished(self._status_code, self._observed_since)
        if self._watching:
            self._watching = False
            self._writer.watch(None)
        sent = self._send(True)
        self._finished = True
        self.on_finish()
        return _awaitable(sent)

    def clear(self) -> None:
        """Forget the headers, body and status written so far."""
        self._headers = ResponseHeaders(self.application.default_headers())
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Answer ``status_code`` in the protocol's error shape (see ``write_error``)."""
        if self._headers_written:
            if not self._finished:
                self.finish()
            return
        self.clear()
        self.set_status(status_code, kwargs.get("reason"))
        self.write_error(status_code, **kwargs)

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
                self._text_parameters = True
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
            self._text_parameters = True
            await self._call_one(path, None, _arguments(self.request.query_arguments), b"")
        except TotoException as exc:
            self._answer_error(exc)
        except Exception as exc:
            self._answer_error(self._unexpected(exc))

    async def head(self, path: str) -> None:
        self.headers_only = True
        await self.get(path)

    def options(self, path: str) -> None:
        allowed = {"x-toto-hmac", "x-toto-session-id", "x-toto-timestamp", "content-type", "origin"}
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
    async def _open_session(self, body: bytes, session_id: str | None = None) -> None:
        """Load the session the request names (or ``session_id``), check its signature and take its lock.

        A session that is unknown, expired or badly signed leaves ``handler.session``
        None: a public method runs without it, and ``_refuse_unauthenticated`` answers
        an @authenticated method with the reason (1007, 1008). A request that names no
        session costs no storage round trip. The session cookie names one only when
        ``_cookie_allowed`` and the request may use it (``CookieSessions.session_id``)."""
        server = self.server
        named = session_id is not None
        if not named:
            session_id = self.request.headers.get("x-toto-session-id")
        if not session_id:
            if server.cookies is None or not self._cookie_allowed:
                return
            session_id = server.cookies.session_id(self)
            if not session_id:
                return
            self._cookie_named = True
        session = await server.sessions.load(session_id)
        if session is None:
            self._session_error = TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
            return
        self._locked_session = session
        # A session named by a parameter (@authenticated_with_parameter) from a link, which
        # can send neither body nor headers, where the scheme allows it (Authenticator.unsigned_links).
        unsigned_link = named and not body and "x-toto-hmac" not in self.request.headers
        if not (unsigned_link and server.authenticator.unsigned_links):
            try:
                checked = server.authenticator.verify_request(self, session, body)
                if checked is not None:
                    await checked
            except TotoException as exc:
                if exc.code == ERROR_SERVICE_UNAVAILABLE:
                    raise
                self._close_session()
                self._session_error = exc
                return
        await server.sessions.renew(session)
        await server.sessions.lock(session)
        self.session = session

    def _refuse_unauthenticated(self, method: Method) -> None:
        """An @authenticated method whose named session failed to load or verify is not run."""
        if method.authenticated and self._session_error is not None and self.session is None:
            raise self._session_error

    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        """Open a new session for ``user_id`` (None: anonymous) and make it this request's.

        Usable at once from sync code (``handler.create_session(uid).session_id``) and
        awaitable from async code (``await handler.create_session(uid)``); the storage
        write (and the password check when ``password`` is given) finishes before the
        answer goes out, and its failure is the answer."""
        session = self.db_connection.create_session(user_id, password, verify_password)
        self._close_session()
        self.session = session
        return session

    async def _open_named_session(self, session_id: str) -> Session | None:
        """Make ``session_id`` this request's session (``retrieve_session``): None when it is
        unknown or expired, as the original's; 1008 when the request's signature does not
        match it, as the original checked with ``hmac_enabled``."""
        self._close_session()
        self.session = None
        self._session_error = None
        await self._open_session(self.request.body or b"", session_id)
        error = self._session_error
        if self.session is None and error is not None and error.code != ERROR_INVALID_SESSION_ID:
            raise error
        return self.session

    def _close_session(self) -> None:
        session = self._locked_session
        if session is not None:
            self._locked_session = None
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
        self._called = method.name
        if self.request.method in ("GET", "HEAD") and not callable_by_get(method.name):
            self.set_header("Allow", "POST")
            raise TotoException(ERROR_VERB_NOT_ALLOWED, f"{method.name} is served by POST only, never by GET.")
        if method.jsonp is not None and isinstance(parameters, dict) and parameters.get(method.jsonp):
            # A JSONP answer is script any site may include: it never runs with the cookie's session.
            self._cookie_allowed = False
        await self._open_session(body)
        try:
            result = self._invoke(method, self, parameters)
            if isinstance(result, _Pending):
                result = await result.awaitable
            if result is _RAW:
                return
            if self.session is not None:
                await self.session.flush()
        finally:
            self._close_session()
        payload = {} if result is None else {"result": result}
        self._answer(payload)

    async def _call_batch(self, batch: Any, body: bytes) -> None:
        methods: dict[str, Method | TotoException] = resolve_batch(self.server.methods, batch, self.server.max_batch)
        self._batch_size = len(batch)
        await self._open_session(body)
        try:
            # Entries run concurrently. A plain function cannot interleave with anything,
            # so _invoke runs it right here; only entries that wait on something get a task.
            answers: dict[str, dict[str, Any]] = {}
            waiting: dict[str, Awaitable[dict[str, Any]]] = {}
            for key in batch:
                method = methods[key]
                if isinstance(method, TotoException):
                    answers[key] = {"error": method.to_dict()}
                    continue
                try:
                    result = self._invoke(method, BatchEntry(self, key), batch[key].get("parameters", {}))
                except Exception as exc:  # a TotoException, or a toto_before_invoke hook that failed
                    answers[key] = {"error": self._unexpected(exc).to_dict()}
                    continue
                if isinstance(result, _Pending):
                    waiting[key] = _entry_answer(result.awaitable)
                else:
                    answers[key] = {"result": result}
            if waiting:
                for key, answer in zip(waiting, await asyncio.gather(*waiting.values())):
                    answers[key] = answer
            if self.session is not None:
                await self.session.flush()
        finally:
            self._close_session()
        self._answer({"batch": {key: answers[key] for key in batch}})

    async def _settle(self) -> None:
        """Wait for the storage calls seed code made without awaiting them (toto.dbconnection):
        the first failure that no code awaited becomes the call's error."""
        while self._work:
            work, self._work = self._work, None
            for pending in work:
                try:
                    await pending.settled()
                except BaseException:
                    created = self.session._creation if self.session is not None else None
                    task = created.task if created is not None else None
                    if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
                        self.session = None  # the answer must not name a session that was never stored
                    raise

    def _invoke(self, method: Method, target: Any, parameters: Any) -> Any:
        """The one invocation path: run ``method`` for ``target`` (this handler or a batch
        entry) up to its first wait, between toto_before_invoke and toto_after_invoke.

        A method that answered without waiting (a plain function) gives its result now:
        no coroutine, no task. One that waits gives ``_Pending`` of its result. Failures
        are raised (now or by the awaitable) as TotoException, from ``invocation_error``."""
        if self._session_error is not None:
            self._refuse_unauthenticated(method)
        if self.server.invoke_hooks:
            self.server.hook.toto_before_invoke(handler=target, method=method.name, parameters=parameters)
        self._active_methods.append(method)
        try:
            if method.validate is not None:
                parameters = method.validate(parameters, self._text_parameters)
            result = method.invoke(target, parameters)
            if not method.plain or self._work or (result is not None and hasattr(result, "__await__")):
                return self._pending(method, target, result)
            if result is None:
                reply = target._reply
                if reply is not None:
                    if not reply.done():
                        return self._pending(method, target, result)
                    result = reply.result()
        except Exception as exc:
            fail_invocation(self.server, target, method.name, exc, self._where(), log)
        if self.server.invoke_hooks:
            self.server.hook.toto_after_invoke(handler=target, method=method.name, result=result, error=None)
        return result

    def _pending(self, method: Method, target: Any, result: Any) -> _Pending:
        """A method that waits: from now on the transport watches for the client going away."""
        if not self._watching and not self._finished:
            self._watching = True
            self._writer.watch(self.on_connection_close)
        return _Pending(self._invoke_rest(method, target, result))

    async def _invoke_rest(self, method: Method, target: Any, result: Any) -> Any:
        """The part of ``_invoke`` after a method's first wait."""
        try:
            if result is not None and hasattr(result, "__await__"):
                result = await result
            if result is None:
                reply = target._reply
                if reply is not None and reply.done():
                    result = reply.result()
                elif method.callback_style:
                    # Callback style: the method answers later through respond().
                    # The session lock is not held while waiting (long polls).
                    if target is self and self.session is not None:
                        await self.session.flush()
                        self._close_session()
                    if reply is None:
                        reply = target._reply = asyncio.get_running_loop().create_future()
                    result = await reply
                elif reply is not None:
                    result = await reply
            if self._work:
                await self._settle()
        except Exception as exc:
            fail_invocation(self.server, target, method.name, exc, self._where(), log)
        if self.server.invoke_hooks:
            self.server.hook.toto_after_invoke(handler=target, method=method.name, result=result, error=None)
        return result

    # -- answering ----------------------------------------------------------------------
    def respond(self, result: Any = None, error: Any = None) -> None:
        """Answer a callback-style call: ``result``, or ``error`` (a TotoException or any exception)."""
        respond(self, result, error, self._where(), self.server.debug, log)

    def respond_raw(self, body: bytes | str, content_type: str, finish: bool = True) -> None:
        """Write ``body`` as is with ``content_type``, bypassing the Toto envelope (and signing)."""
        self.set_header("Content-Type", content_type)
        if not self.headers_only:
            self.write(body)
        if finish:
            self.finish()
            reply = self._reply
            if reply is None:
                reply = self._reply = asyncio.get_running_loop().create_future()
            if not reply.done():
                reply.set_result(_RAW)

    raw_respond = respond_raw

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        """Answer with a redirect to ``url`` (302, or 301 when ``permanent``) instead of the envelope."""
        self.set_status(status if status is not None else 301 if permanent else 302)
        self.set_header("Location", url)
        self.respond_raw(b"", "text/plain; charset=utf-8")

    def _answer(self, payload: dict[str, Any], status: int = 200) -> None:
        if self._finished:
            return
        session = self.session
        if session is not None:
            payload["session"] = session.to_response()
        if self.server.cookies is not None:
            # The cookie's session ended here: signed out, or unknown or expired (1007).
            error = self._session_error
            ended = self._cookie_named and (error is None or error.code == ERROR_INVALID_SESSION_ID)
            self.server.cookies.answer(self, session, ended)
        self._payload = payload
        serializer = self._response_serializer
        try:
            body = serializer.encode(payload)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            log.error("answer of %s could not be serialized: %s", self._where(), exc)
            payload = {"error": {"code": ERROR_SERVER, "value": "The result could not be serialized."}}
            if session is not None:
                payload["session"] = session.to_response()
            body = serializer.encode(payload)
        if status != 200:
            self.set_status(status)
        self._headers["Content-Type"] = self._response_type or serializer.content_types[0]
        if session is not None:
            self.server.authenticator.sign_response(self, session, body)
        self.finish(body)

    def _answer_error(self, exc: TotoException) -> None:
        self._error = exc
        if exc.code == ERROR_SERVICE_UNAVAILABLE:
            log.warning("%s: %s", self._where(), exc.value)
            # The call did not run: a client may send it again, after this long (PROTOCOL.md section 7).
            self._headers["Retry-After"] = "1"
        self._answer({"error": exc.to_dict()}, exc.status)

    def _where(self) -> str:
        return f"{self.request.method} {redact_target(self.request.uri)}"

    def _unexpected(self, exc: BaseException) -> TotoException:
        return error_for(exc, self._where(), self.server.debug, log)

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
        self.finish(self.server.default_serializer.encode({"error": error}))

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
        connection_gone(self, self._active_methods, log)
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
        self._close_session()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, asyncio.CancelledError):
            return
        log.error("uncaught exception in %s", self._where(), exc_info=(typ, value, tb))


class BatchEntry:
    """Stands in for the handler inside one batch entry, so ``respond`` answers that entry."""

    def __init__(self, handler: TotoHandler, request_key: str) -> None:
        self.__dict__["handler"] = handler
        self.__dict__["request_key"] = request_key
        self.__dict__["_reply"] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handler, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            self.__dict__[name] = value
        else:
            setattr(self.handler, name, value)

    def respond(self, result: Any = None, error: Any = None) -> None:
        handler = self.handler
        respond(self, result, error, handler._where(), handler.server.debug, log)

    def respond_raw(self, body: Any, content_type: str, finish: bool = True) -> None:
        raise TotoException(ERROR_SERVER, "respond_raw cannot answer one entry of a batch")

    raw_respond = respond_raw


class _Pending:
    """What ``_invoke`` gives for a method that waits: the awaitable of its result (a
    wrapper, so a result that is itself awaitable is never mistaken for one)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


_done: asyncio.Future[None] | None = None


def _awaitable(sent: Any) -> Awaitable[None]:
    """What ``flush`` and ``finish`` return: the transport's awaitable, or one already done
    (one per event loop, shared: a done future can be awaited any number of times)."""
    global _done
    if sent is not None:
        return sent  # type: ignore[no-any-return]
    loop = asyncio.get_running_loop()
    done = _done
    if done is None or done.get_loop() is not loop:
        done = _done = loop.create_future()
        done.set_result(None)
    return done


async def _entry_answer(pending: Awaitable[Any]) -> dict[str, Any]:
    """A waiting batch entry's answer: its result, or the error ``_invoke`` raised for it."""
    try:
        return {"result": await pending}
    except TotoException as exc:
        return {"error": exc.to_dict()}


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
