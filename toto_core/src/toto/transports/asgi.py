"""The ASGI face of the request path, and ``--http=uvicorn`` serving it.

``ASGIApp`` is an ASGI 3 application of one ``TotoServer``: each HTTP request goes to the
same request path as on Tornado (``toto.handler``). ``toto.asgi.app()`` builds one for any
ASGI server; ``--http=uvicorn`` runs uvicorn (httptools and uvloop) inside Toto's own
process, so ``--processes``, daemon mode and the SIGTERM drain work as on Tornado.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from toto.transports.guards import (
    CONNECTIONS_FULL,
    HEAD_TOO_LARGE,
    MALFORMED_REQUEST,
    TARGET_TOO_LONG,
    BodyTimeouts,
    ConnectionDeadlines,
    head_read_limit,
)
from toto.transports.queued import QueuedWriter, exchange
from toto.transports.request import build_request, collect_headers
from toto.transports.tornado import bind_from_options

if TYPE_CHECKING:
    from toto.handler import TotoApplication, TotoHandler
    from toto.response import ResponseHeaders
    from toto.server import TotoServer

log = logging.getLogger("toto.server")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ASGIWriter(QueuedWriter):
    """The ``ResponseWriter`` of one ASGI request: each write an ASGI message, sent by ``pump``."""

    __slots__ = ("receive", "send_message")

    def __init__(self, receive: Receive, send: Send) -> None:
        super().__init__()
        self.receive = receive
        self.send_message = send

    def start(self, status: int, reason: str, headers: ResponseHeaders, chunk: bytes, last: bool) -> None:
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.get_all()]
        self.queued({"type": "http.response.start", "status": status, "headers": raw}, False)
        self.send(chunk, last)

    def send(self, chunk: bytes, last: bool) -> None:
        self.queued({"type": "http.response.body", "body": chunk, "more_body": not last}, last)

    async def deliver(self, item: Any) -> None:
        await self.send_message(item)

    async def gone(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


class ASGIApp:
    """An ASGI application serving ``server``'s request path.

    Made by ``toto.asgi.app`` (then ASGI lifespan opens and closes the server) or by
    ``--http=uvicorn`` (the server is already started)."""

    def __init__(self, server: TotoServer, started: bool = False) -> None:
        self.server = server
        self.started = started
        self.application: TotoApplication | None = server.application
        self.bodies = BodyTimeouts(server.body_timeout)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "WebSockets need --http=tornado"})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if not self.started:
                        await self.server.start(listen=False)
                        self.started = True
                    self.application = self.server.application
                except Exception as exc:
                    log.exception("Toto failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.server.stop()
                self.bodies.stop()  # its timer task, on a loop that may run on (an in-process TestClient's)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        app = self.application
        if app is None:
            raise RuntimeError("Toto has not started: run the ASGI server with lifespan on")
        headers, size = collect_headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        raw_path = scope.get("raw_path")
        uri = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope.get("query_string")
        if query:
            uri += "?" + query.decode("latin-1")
        client = scope.get("client")
        request = build_request(
            scope["method"],
            uri,
            headers,
            client[0] if client else "",
            scope.get("scheme", "http"),
            self.server.xheaders,
        )
        writer = ASGIWriter(receive, send)
        handler = app.begin(request, writer, app.method_path(request.path), size)
        await exchange(handler, writer, lambda: read_body(handler, receive), self.bodies)


async def read_body(handler: TotoHandler, receive: Receive) -> bool:
    """Feed the body to ``handler``; False when the client went away (the handler then knows)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            handler.on_connection_close()
            return False
        chunk = message.get("body")
        if chunk:
            handler.data_received(chunk)
            if handler.finished:
                return False
        if not message.get("more_body"):
            return True


# -- --http=uvicorn -----------------------------------------------------------------------------


def guarded_protocol(options: Any, deadlines: ConnectionDeadlines[Any]) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the connection guards uvicorn has no option for
    (``toto.transports.guards``): uvicorn times only an idle kept-alive connection, reads a
    request head of any size, caps connections with a plain-text 503 and refuses what
    httptools cannot parse with a plain-text 400. Here a connection gets ``idle_timeout``
    for each request head (from its first byte or its last answer), a head stops at
    ``head_read_limit`` (431), the connection past ``max_connections`` is answered 503 (1013)
    when it opens, and refusals are the protocol's JSON. The body timeout is ``ASGIApp``'s."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    max_connections = int(options.max_connections)
    head_limit = head_read_limit(options.max_header_size)
    max_request_line = int(options.max_request_line)
    refused = 0

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        #: Bytes of the request head read so far, while one is being read.
        head_bytes = 0
        reading_head = True
        url = b""  # uvicorn sets it when a request begins; a refusal before that reads this

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal refused
            super().connection_made(transport)  # type: ignore[arg-type]
            if max_connections and len(self.connections) > max_connections:
                if refused % 1000 == 0:
                    log.warning("refusing connections beyond max_connections=%d (503)", max_connections)
                refused += 1
                self.refuse(CONNECTIONS_FULL)
                return
            deadlines.start()
            deadlines.awaiting_head(self)

        def connection_lost(self, exc: Exception | None) -> None:
            deadlines.clear(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self.reading_head:
                super().data_received(data)
                return
            self.head_bytes += len(data)
            super().data_received(data)
            if self.reading_head and self.head_bytes > head_limit and not self.transport.is_closing():
                self.refuse(HEAD_TOO_LARGE)

        def on_headers_complete(self) -> None:
            self.reading_head = False
            self.head_bytes = 0
            deadlines.serving(self)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.reading_head = True

        def on_response_complete(self) -> None:
            # uvicorn's, with the idle deadline instead of a keep-alive timer started per answer.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                deadlines.awaiting_head(self)

        def send_400_response(self, msg: str) -> None:
            self.refuse(TARGET_TOO_LONG if len(self.url) > max_request_line else MALFORMED_REQUEST)

        def refuse(self, answer: bytes) -> None:
            self.transport.write(answer)
            self.transport.close()

        # What ConnectionDeadlines needs of a connection.
        def close(self) -> None:
            self.transport.close()

        def closed(self) -> bool:
            return self.transport.is_closing()

    return GuardedHttpToolsProtocol


class UvicornTransport:
    """uvicorn (httptools, the running uvloop) serving ``ASGIApp`` in this process."""

    def __init__(self, server: TotoServer, application: TotoApplication) -> None:
        self.server = server
        self.app = ASGIApp(server, started=True)
        o = server.options
        self.deadlines: ConnectionDeadlines[Any] = ConnectionDeadlines(float(o.idle_timeout), 0.0)
        self.uvicorn: Any = None
        self.task: asyncio.Task[None] | None = None

    async def listen(self, sockets: list[socket.socket] | None) -> None:
        import uvicorn

        o = self.server.options
        if sockets is None:
            sockets = bind_from_options(o)

        class Server(uvicorn.Server):
            @contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield  # Toto's server handles SIGTERM and SIGINT (the drain)

        config = uvicorn.Config(
            self.app,
            lifespan="off",
            http=guarded_protocol(o, self.deadlines),
            ws="none",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,  # Toto reads them itself with xheaders (build_request)
            timeout_graceful_shutdown=max(1, int(float(o.drain_timeout))),
        )
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.uvicorn = Server(config)
        self.task = asyncio.ensure_future(self.uvicorn.serve(sockets))
        while not self.uvicorn.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("uvicorn stopped while starting")
            await asyncio.sleep(0.01)

    def stop_listening(self) -> None:
        if self.uvicorn is not None:
            for listener in self.uvicorn.servers:
                listener.close()

    async def close(self) -> None:
        if self.uvicorn is not None and self.task is not None:
            self.uvicorn.should_exit = True
            await self.task
        self.deadlines.stop()
