"""The Tornado transport (the default): Tornado's ``HTTPServer`` parses HTTP, this module
hands each request to the request path (``toto.handler``) and writes its answer back.

Everything of Tornado's HTTP plumbing the server uses is here: the message delegate, the
writer over ``HTTP1Connection``, and the limits on connections (how many, how long, how
large). Tornado's own defaults suit a server behind a trusted proxy (an hour to send headers,
no bound on open connections, a silent close for an oversized head); a server facing clients
directly needs them in seconds and counts, and answers that say what went wrong.

Nagle's algorithm is turned off once per connection (Tornado toggles it twice a request,
and Toto writes whole answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from tornado import httputil, iostream
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from toto.transports.guards import (
    CONNECTIONS_FULL,
    HEAD_TOO_LARGE,
    MALFORMED_REQUEST,
    ConnectionDeadlines,
    head_read_limit,
)

if TYPE_CHECKING:
    from toto.handler import TotoApplication, TotoHandler
    from toto.response import ResponseHeaders
    from toto.server import TotoServer

log = logging.getLogger("toto.server")


#: What Tornado writes for a request it cannot parse (a head, a chunked body), and what Toto sends instead.
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class GuardedStream(iostream.IOStream):
    """Every connection's ``IOStream`` once ``LimitedHTTPServer`` takes it (its class is
    swapped, one store a connection instead of three patched methods): Tornado's refusals
    are answered in the protocol's shape, and Nagle stays off.

    Tornado writes a bare ``400`` for a request it cannot parse, and closes without a word
    on a head that does not end within its read limit (``head_read_limit``): clients that
    read the JSON error can parse neither. ``reading_head`` (kept by ``RequestDelegate``)
    tells a head that never ends (431) from a chunk line that never ends (400)."""

    reading_head = True

    def write(self, data: Any) -> Any:
        return super().write(MALFORMED_REQUEST if data == _BARE_400 else data)

    def close(self, exc_info: Any = False) -> None:
        if isinstance(exc_info, iostream.UnsatisfiableReadError) and not self.closed():
            # Tornado gives up on the read and closes at once: the answer goes out first, as it can.
            with contextlib.suppress(OSError):
                self.socket.send(HEAD_TOO_LARGE if self.reading_head else MALFORMED_REQUEST)
        super().close(exc_info)

    def set_nodelay(self, value: bool) -> None:
        """Tornado turns Nagle back on after each answer and off at the next; it stays off
        (answers are written whole), set once when the connection is taken."""


class TornadoDeadlines(ConnectionDeadlines[iostream.IOStream]):
    """The connection deadlines of Tornado's server: a request head and a body arrive
    within the timeouts (``ConnectionDeadlines``), and a connection that asked for a WebSocket
    keeps its idle deadline until the socket takes it."""

    __slots__ = ("upgrading",)

    def __init__(self, idle: float, body: float) -> None:
        super().__init__(idle, body)
        #: Connections that asked for a WebSocket: the socket owns one that upgraded (Tornado
        #: detached it from its HTTP1Connection), one refused waits for its next head.
        self.upgrading: dict[iostream.IOStream, Any] = {}

    def upgrade(self, stream: iostream.IOStream, connection: Any) -> None:
        """A WebSocket request: the idle deadline holds until the socket takes the connection."""
        if self.idle:
            self.upgrading[stream] = connection
        self.awaiting_head(stream)

    def sweep(self) -> None:
        for stream, connection in list(self.upgrading.items()):
            if stream.closed() or connection.stream is None:  # gone, or a WebSocket now
                del self.upgrading[stream]
                self.clear(stream)


class LimitedHTTPServer(HTTPServer):
    """Tornado's ``HTTPServer`` that answers 503 (1013) and closes a connection beyond
    ``max_connections`` open ones, instead of serving every client that connects, and
    answers what Tornado refuses in the protocol's shape (``GuardedStream``).
    Its connections' timeouts are ``deadlines``' (set by ``make_http_server``).
    """

    max_connections = 0
    _refused = 0
    deadlines: TornadoDeadlines

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        if self.max_connections and len(self._connections) >= self.max_connections:
            if self._refused % 1000 == 0:
                log.warning("refusing connections beyond max_connections=%d (503)", self.max_connections)
            self._refused += 1
            try:
                stream.write(CONNECTIONS_FULL).add_done_callback(lambda _: stream.close())
            except iostream.StreamClosedError:
                pass
            return
        stream.set_nodelay(True)
        if type(stream) is iostream.IOStream:  # plain TCP: TLS ends at the proxy (SECURITY.md)
            stream.__class__ = GuardedStream
        self.deadlines.start()
        self.deadlines.awaiting_head(stream)
        super().handle_stream(stream, address)


def make_http_server(app: Any, options: Any, max_body_size: int, deadlines: TornadoDeadlines) -> LimitedHTTPServer:
    """The transport's server with the options' timeouts and limits."""
    server = LimitedHTTPServer(
        app,
        xheaders=bool(options.xheaders),
        max_body_size=max_body_size,
        max_header_size=head_read_limit(options.max_header_size),
    )
    server.max_connections = int(options.max_connections)
    # The idle timeout (a complete request head, on a new connection and between the requests
    # of a kept-alive one) and the body timeout are the deadlines', not Tornado's timers.
    server.conn_params.header_timeout = None
    server.conn_params.body_timeout = None
    server.deadlines = deadlines
    return server


# -- requests -------------------------------------------------------------------------------

_running: set[asyncio.Future[Any]] = set()


def head_size(headers: httputil.HTTPHeaders) -> int:
    """The bytes of a request's header lines, about as they came (name, ": ", value, CRLF)."""
    return sum(len(name) + len(value) + 4 for name, value in headers.get_all())


class TornadoDelegate(httputil.HTTPServerConnectionDelegate):
    """What Tornado's ``HTTPServer`` calls for each request: a ``RequestDelegate`` each."""

    def __init__(self, application: TotoApplication, deadlines: TornadoDeadlines) -> None:
        self.application = application
        self.deadlines = deadlines

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return RequestDelegate(self.application, server_conn, request_conn, self.deadlines)


class Writer:
    """The ``ResponseWriter`` of one request over Tornado's ``HTTP1Connection``; once the
    answer is whole, the connection waits for its next request head (``TornadoDeadlines``)."""

    __slots__ = ("connection", "deadlines")

    def __init__(self, connection: Any, deadlines: ConnectionDeadlines[Any]) -> None:
        self.connection = connection
        self.deadlines = deadlines

    def start(self, status: int, reason: str, headers: ResponseHeaders, chunk: bytes, last: bool) -> Any:
        connection = self.connection
        sent = connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, reason), headers, chunk)
        if last:
            self._finish()
        return sent

    def send(self, chunk: bytes, last: bool) -> Any:
        sent = self.connection.write(chunk) if chunk else None
        if last:
            self._finish()
        return sent

    def _finish(self) -> None:
        self.connection.finish()
        self.deadlines.awaiting_head(self.connection.stream)

    def watch(self, callback: Any) -> None:
        # Only an attribute of HTTP1Connection: Tornado itself listens for the close of a
        # connection whose answer is not written by the end of RequestDelegate.finish.
        self.connection.set_close_callback(callback)


class RequestDelegate(httputil.HTTPMessageDelegate):
    """One request on one connection: makes its handler, streams the body to it, runs it."""

    __slots__ = ("app", "deadlines", "handler", "request_conn", "server_conn", "socket")

    def __init__(
        self,
        app: TotoApplication,
        server_conn: object,
        request_conn: httputil.HTTPConnection,
        deadlines: TornadoDeadlines,
    ) -> None:
        self.app = app
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.deadlines = deadlines
        self.handler: TotoHandler | None = None
        self.socket: httputil.HTTPMessageDelegate | None = None

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> None:
        request = httputil.HTTPServerRequest(
            connection=self.request_conn,
            server_connection=self.server_conn,
            start_line=start_line,  # type: ignore[arg-type]
            headers=headers,
        )
        app = self.app
        path = app.method_path(request.path)
        sockets = app.sockets
        stream: GuardedStream = self.request_conn.stream  # type: ignore[attr-defined]
        if sockets is not None and path is not None and request.method == "GET" and sockets.serves(path):
            # A WebSocket: from here on Tornado's websocket handler owns the connection (toto.websocket).
            self.deadlines.upgrade(stream, self.request_conn)
            self.socket = sockets.start_request(self.server_conn, self.request_conn)
            self.socket.headers_received(start_line, headers)
            return
        stream.reading_head = False
        self.deadlines.awaiting_body(stream)
        self.handler = app.begin(request, Writer(self.request_conn, self.deadlines), path, head_size(headers))

    def data_received(self, chunk: bytes) -> None:
        if self.socket is not None:
            self.socket.data_received(chunk)
            return
        handler = self.handler
        if handler is not None and not handler.finished:
            handler.data_received(chunk)

    def finish(self) -> None:
        if self.socket is not None:
            self.socket.finish()
            return
        stream: GuardedStream = self.request_conn.stream  # type: ignore[attr-defined]
        stream.reading_head = True  # the body is read: what comes next is the next request's head
        handler = self.handler
        if handler is not None and not handler.finished:
            self.deadlines.serving(stream)
            run_request(handler.execute())

    def on_connection_close(self) -> None:
        if self.socket is not None:
            self.socket.on_connection_close()
            return
        handler = self.handler
        if handler is not None and not handler.finished:
            handler.on_connection_close()


def run_request(coro: Coroutine[Any, Any, None]) -> None:
    """Run a request's coroutine as a task, held by the server while it runs.

    Tried and dropped: stepping the coroutine up to its first wait outside a task (so an
    answer ready at once would not make Tornado listen for the connection's close): code
    below it then runs with no current task, and libraries that need one (``asyncio.timeout``
    in asyncpg and SQLAlchemy's pool, context tokens in pymongo) fail. Python 3.12's eager
    task factory does it right; this is the place to use it once 3.12 is the oldest Python."""
    task = asyncio.ensure_future(coro)
    # The loop keeps only weak references to tasks; the server holds running requests.
    _running.add(task)
    task.add_done_callback(_running.discard)


# -- the transport -----------------------------------------------------------------------------


def bind_from_options(o: Any) -> list[socket.socket]:
    """Listening sockets on the options' address and port (port 0: a free one, then the
    options name it)."""
    sockets = bind_sockets(int(o.port), o.address or None)
    if int(o.port) == 0:
        o.port = sockets[0].getsockname()[1]
        log.info("port 0: listening on free port %s", o.port)
    return sockets


class TornadoTransport:
    """Tornado's ``HTTPServer`` with the options' limits, serving the request path."""

    def __init__(self, server: TotoServer, application: TotoApplication) -> None:
        o = server.options
        self.options = o
        deadlines = TornadoDeadlines(float(o.idle_timeout), float(o.body_timeout))
        delegate = TornadoDelegate(application, deadlines)
        self.http_server = make_http_server(delegate, o, max(server.max_body_size * 2, 1 << 30), deadlines)

    async def listen(self, sockets: list[socket.socket] | None) -> None:
        self.http_server.add_sockets(bind_from_options(self.options) if sockets is None else sockets)

    def stop_listening(self) -> None:
        self.http_server.stop()

    async def close(self) -> None:
        await self.http_server.close_all_connections()
        self.http_server.deadlines.stop()
