"""The request path: one Tornado handler reads, checks, invokes and answers.

Read it top to bottom: size limit -> parse -> resolve method -> load session ->
verify signature -> invoke -> save state -> serialize -> sign -> write.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

from tornado import httputil
from tornado.web import RequestHandler, stream_request_body

from toto.events import EventManager
from toto.exceptions import (
    ERROR_INVALID_SESSION_ID,
    ERROR_MALFORMED_REQUEST,
    ERROR_MISSING_METHOD,
    ERROR_SERVER,
    ERROR_SERVICE_UNAVAILABLE,
    ERROR_UNSUPPORTED_CONTENT_TYPE,
    TotoException,
)
from toto.lookup import Method
from toto.plugins import install_hint

if TYPE_CHECKING:
    from toto.server import TotoServer
    from toto.sessions import Session

log = logging.getLogger("toto.request")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_RAW = object()  # marks a response already written by respond_raw


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise TotoException(ERROR_MALFORMED_REQUEST, "Parameters must be UTF-8 text.") from None


def _arguments(arguments: dict[str, list[bytes]]) -> dict[str, Any]:
    """Query or form arguments: given once, a string; given several times, a list (compat)."""
    return {name: _text(v[0]) if len(v) == 1 else [_text(x) for x in v] for name, v in arguments.items()}


@stream_request_body
class TotoHandler(RequestHandler):
    """Serves every Toto request. Methods receive it as ``handler``.

    Useful to methods: ``handler.session``, ``handler.connection.db``,
    ``handler.respond(result=..., error=...)``, ``handler.respond_raw(body, content_type)``,
    ``handler.register_event_handler(name, fn)``, ``handler.create_session(user_id)``,
    ``handler.request`` (Tornado's request).
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")  # type: ignore[assignment]

    def initialize(self, server: TotoServer) -> None:  # type: ignore[override]
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
        server.in_flight.add(self)

    # -- reading ----------------------------------------------------------------------
    def set_default_headers(self) -> None:
        # Runs before initialize(), so the server comes from the application.
        server = self.application.toto_server  # type: ignore[attr-defined]
        self._headers["Access-Control-Allow-Origin"] = server.allow_origin
        expose = server.expose_headers
        if expose:
            self._headers["Access-Control-Expose-Headers"] = expose

    def compute_etag(self) -> None:
        return None

    async def prepare(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                await self._refuse(400, TotoException(ERROR_MALFORMED_REQUEST, "Malformed Content-Length"))
            elif size > self.server.max_body_size:
                await self._refuse(413, self._too_large())

    def _too_large(self) -> TotoException:
        limit = self.server.max_body_size
        return TotoException(ERROR_MALFORMED_REQUEST, f"Request body is larger than max_body_size ({limit} bytes)")

    async def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > self.server.max_body_size:
            self._chunks.clear()
            await self._refuse(413, self._too_large())
            return
        self._chunks.append(chunk)

    async def _refuse(self, status: int, error: TotoException) -> None:
        """Answer before the body is read; Tornado then closes the connection instead of reading on."""
        self._refused = True
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
        await self.finish(serializer.encode({"error": error.to_dict()}))

    # -- HTTP verbs ---------------------------------------------------------------------
    async def post(self, path: str) -> None:
        if self._finished:
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            content_type = self.request.headers.get("Content-Type", "application/json")
            mime = content_type.split(";", 1)[0].strip().lower() or "application/json"
            if mime in _FORM_TYPES:
                arguments: dict[str, list[bytes]] = {}
                files: dict[str, list[httputil.HTTPFile]] = {}
                httputil.parse_body_arguments(content_type, body, arguments, files, self.request.headers)
                parameters = _arguments(arguments)
                for name, uploads in files.items():
                    entries = [
                        {"filename": f.filename, "body": f.body, "content_type": f.content_type} for f in uploads
                    ]
                    parameters[name] = entries[0] if len(entries) == 1 else entries
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
                await self._call_one(path, request.get("method"), request.get("parameters", {}), body)
        except TotoException as exc:
            self._answer_error(exc)
        except Exception as exc:
            self._answer_error(self._unexpected(exc))

    async def get(self, path: str) -> None:
        try:
            self._pick_response_serializer(None)
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
    async def _open_session(self, body: bytes, optional: bool) -> None:
        """Load the session the request names, check its signature and take its lock."""
        session_id = self.request.headers.get("x-toto-session-id")
        if not session_id:
            return
        server = self.server
        session = await server.sessions.load(session_id)
        if session is None:
            if optional:
                return
            raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
        self._locked_session = session
        server.authenticator.verify_request(self, session, body)
        new_expiry = server.sessions.renewal(session)
        if new_expiry is not None:
            await server.storage.touch_session(session.session_id, new_expiry)
            session._record.expires = new_expiry
        await server.sessions.lock(session)
        self.session = session

    async def create_session(self, user_id: str | None = None) -> Session:
        """Open a new session for ``user_id`` (None: anonymous) and make it this request's."""
        server = self.server
        session = await server.sessions.create(user_id, server.authenticator.uses_session_key)
        self._close_session()
        self.session = session
        return session

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
        await self._open_session(body, method.optional_session)
        try:
            result = await self._invoke(method, self, parameters)
            if result is _RAW:
                return
            if self.session is not None:
                await self.session.flush()
        finally:
            self._close_session()
        payload = {} if result is None else {"result": result}
        self._answer(payload)

    async def _call_batch(self, batch: Any, body: bytes) -> None:
        if not isinstance(batch, dict):
            raise TotoException(ERROR_MALFORMED_REQUEST, "batch must be an object of {id: call}.")
        if len(batch) > self.server.max_batch:
            raise TotoException(ERROR_MALFORMED_REQUEST, f"A batch may hold at most {self.server.max_batch} calls.")
        methods: dict[str, Method | TotoException] = {}
        for key, call in batch.items():
            try:
                if not isinstance(call, dict):
                    raise TotoException(ERROR_MALFORMED_REQUEST, "Each batch entry must be an object.")
                methods[key] = self.server.methods.resolve(call.get("method"))
            except TotoException as exc:
                methods[key] = exc
        optional = all(isinstance(m, Method) and m.optional_session for m in methods.values())
        await self._open_session(body, optional)
        try:

            async def run(key: str) -> dict[str, Any]:
                method = methods[key]
                if isinstance(method, TotoException):
                    return {"error": method.to_dict()}
                try:
                    entry = BatchEntry(self, key)
                    result = await self._invoke(method, entry, batch[key].get("parameters", {}))
                    return {"result": result}
                except TotoException as exc:
                    return {"error": exc.to_dict()}
                except Exception as exc:
                    return {"error": self._unexpected(exc).to_dict()}

            keys = list(batch)
            answers = await asyncio.gather(*(run(k) for k in keys))
            if self.session is not None:
                await self.session.flush()
        finally:
            self._close_session()
        self._answer({"batch": dict(zip(keys, answers))})

    async def _invoke(self, method: Method, target: Any, parameters: Any) -> Any:
        hooks = self.server.invoke_hooks
        if hooks:
            self.server.hook.toto_before_invoke(handler=target, method=method.name, parameters=parameters)
        self._active_methods.append(method)
        try:
            if method.is_coroutine:
                result = await method.invoke(target, parameters)
            else:
                result = method.invoke(target, parameters)
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
        except TotoException as exc:
            if hooks:
                self.server.hook.toto_after_invoke(handler=target, method=method.name, result=None, error=exc.to_dict())
            raise
        if hooks:
            self.server.hook.toto_after_invoke(handler=target, method=method.name, result=result, error=None)
        return result

    # -- answering ----------------------------------------------------------------------
    def respond(self, result: Any = None, error: Any = None) -> None:
        """Answer a callback-style call: ``result``, or ``error`` (a TotoException or any exception)."""
        reply = self._reply
        if reply is None:
            reply = self._reply = asyncio.get_running_loop().create_future()
        if reply.done():
            return
        if error is not None:
            reply.set_exception(_as_toto_error(self, error))
        else:
            reply.set_result(result)

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

    def _answer(self, payload: dict[str, Any], status: int = 200) -> None:
        if self._finished:
            return
        session = self.session
        if session is not None:
            payload["session"] = session.to_response()
        serializer = self._response_serializer
        try:
            body = serializer.encode(payload)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            log.error("answer of %s could not be serialized: %s", self.request.uri, exc)
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
        if exc.code == ERROR_SERVICE_UNAVAILABLE:
            log.warning("%s %s: %s", self.request.method, self.request.uri, exc.value)
        self._answer({"error": exc.to_dict()}, exc.status)

    def _unexpected(self, exc: BaseException) -> TotoException:
        if isinstance(exc, TotoException):
            return exc
        log.error("error in %s %s", self.request.method, self.request.uri, exc_info=exc)
        if self.server.debug:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return TotoException(ERROR_SERVER, text)
        return TotoException(ERROR_SERVER, f"Server error ({type(exc).__name__})")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Tornado-level errors (405, unexpected failures) in the protocol's shape, never a page.
        reason = self._reason or "error"
        self._headers["Content-Type"] = "application/json"
        self.finish(self.server.default_serializer.encode({"error": {"code": ERROR_SERVER, "value": reason}}))

    # -- events and lifecycle -----------------------------------------------------------
    def register_event_handler(
        self, event_name: str, handler: Any, run_on_main_loop: bool = True, deregister_on_finish: bool = True
    ) -> Any:
        """Call ``handler(args)`` on event ``event_name`` while this request is open.

        The registration is dropped when the request finishes or its connection closes.
        """
        if not deregister_on_finish:
            return EventManager.instance().register_handler(event_name, handler, run_on_main_loop)
        sig = EventManager.instance().register_handler(event_name, handler, run_on_main_loop, self)
        self.registered_event_handlers.append(sig)
        return sig

    def deregister_event_handler(self, sig: Any) -> None:
        EventManager.instance().remove_handler(sig)
        if sig in self.registered_event_handlers:
            self.registered_event_handlers.remove(sig)

    def on_connection_close(self) -> None:
        for method in self._active_methods:
            if method.on_close is not None:
                try:
                    method.on_close(self)
                except Exception:
                    log.exception("on_connection_close of %s failed", method.name)
        reply = self._reply
        if reply is not None and not reply.done():
            reply.cancel()
        self.on_finish()

    def on_finish(self) -> None:
        self.server.in_flight.discard(self)
        if self.registered_event_handlers:
            manager = EventManager.instance()
            for sig in self.registered_event_handlers:
                manager.remove_handler(sig)
            self.registered_event_handlers.clear()
        self._close_session()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, asyncio.CancelledError):
            return
        super().log_exception(typ, value, tb)


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
        reply = self._reply
        if reply is None:
            reply = self.__dict__["_reply"] = asyncio.get_running_loop().create_future()
        if reply.done():
            return
        if error is not None:
            reply.set_exception(_as_toto_error(self.handler, error))
        else:
            reply.set_result(result)

    def respond_raw(self, body: Any, content_type: str, finish: bool = True) -> None:
        raise TotoException(ERROR_SERVER, "respond_raw cannot answer one entry of a batch")

    raw_respond = respond_raw


def _as_toto_error(handler: TotoHandler, error: Any) -> TotoException:
    if isinstance(error, TotoException):
        return error
    if isinstance(error, BaseException):
        return handler._unexpected(error)
    if isinstance(error, dict) and "code" in error:
        return TotoException(error["code"], error.get("value"))
    return TotoException(ERROR_SERVER, error)


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
