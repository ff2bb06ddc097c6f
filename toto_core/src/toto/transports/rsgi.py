"""The RSGI face of the request path, and ``--http=granian`` serving it.

RSGI is granian's own interface: the request arrives as one object, the body is one await,
and a whole answer is one call (``response_bytes``), with no per-message dictionaries as in
ASGI; on this machine granian's RSGI echo is 1.1-1.3x aiohttp's (``nox -s bench --
--ceilings``), the fastest of the servers measured, so it is the recommended fast transport.
granian runs embedded in Toto's process and event loop (``granian.server.embed``), so
``--processes``, daemon mode, the SIGTERM drain and Tornado's IOLoop in methods work as on
Tornado.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException
from toto.transports.guards import BodyTimeouts, head_read_limit
from toto.transports.queued import QueuedWriter, exchange
from toto.transports.request import build_request, collect_headers

if TYPE_CHECKING:
    from toto.handler import TotoApplication, TotoHandler
    from toto.response import ResponseHeaders
    from toto.server import TotoServer

log = logging.getLogger("toto.server")


class RSGIWriter(QueuedWriter):
    """The ``ResponseWriter`` of one RSGI request. A whole answer leaves at once
    (``response_bytes``); a streamed one (``flush``) queues its chunks for ``pump``."""

    __slots__ = ("protocol", "stream")

    def __init__(self, protocol: Any) -> None:
        super().__init__()
        self.protocol = protocol
        self.stream: Any = None

    def start(self, status: int, reason: str, headers: ResponseHeaders, chunk: bytes, last: bool) -> None:
        listed = list(headers.get_all())
        if last:
            self.ended = True
            self.protocol.response_bytes(status, listed, chunk)
            return
        self.stream = self.protocol.response_stream(status, listed)
        self.send(chunk, False)

    def send(self, chunk: bytes, last: bool) -> None:
        self.queued(chunk or None, last)

    async def deliver(self, item: Any) -> None:
        await self.stream.send_bytes(item)

    async def gone(self) -> None:
        await self.protocol.client_disconnect()


class RSGIApp:
    """An RSGI application serving ``server``'s (started) request path."""

    def __init__(self, server: TotoServer, application: TotoApplication) -> None:
        self.server = server
        self.application = application
        self.xheaders = server.xheaders
        self.bodies = BodyTimeouts(server.body_timeout)

    async def __call__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            protocol.close(1008)  # a WebSocket: served by --http=tornado only
            return
        app = self.application
        headers, size = collect_headers(scope.headers.items())
        uri = scope.path
        if "%" in uri or not uri.isascii():
            uri = raw_path(uri)
        if scope.query_string:
            uri += "?" + scope.query_string
        request = build_request(
            scope.method, uri, headers, scope.client.rpartition(":")[0], scope.scheme, self.xheaders
        )
        writer = RSGIWriter(protocol)
        handler = app.begin(request, writer, app.method_path(request.path), size)
        await exchange(handler, writer, lambda: _read_body(handler, protocol, "Content-Length" in headers), self.bodies)


async def _read_body(handler: TotoHandler, protocol: Any, sized: bool) -> bool:
    """Feed the body to ``handler``; False when it did not arrive whole (then answered 400
    and never run) or was refused.

    granian does not say when a body broke off (the client closed before its end, a
    malformed chunk line, a chunk size that overflows): read whole, it raises; streamed, it
    ends the chunks with an empty one after the empty one that marks the end. A chunked
    body with trailer fields looks the same and is refused with them (docs/operations.md)."""
    if sized:  # the size is known and within max_body_size: one read
        try:
            body = await protocol()
        except Exception:
            return _broken(handler)
        if body:
            handler.data_received(body)
        return True
    ended = False
    async for chunk in protocol:  # chunked: counted as it comes, refused once over max_body_size
        if ended:
            return _broken(handler)
        if not chunk:
            ended = True
            continue
        handler.data_received(chunk)
        if handler.finished:
            return False
    return True


def _broken(handler: TotoHandler) -> bool:
    """A body that did not arrive whole never runs: 400 (1011), to a client that may be gone."""
    handler.refuse(400, TotoException(ERROR_MALFORMED_REQUEST, "The request body did not arrive whole."))
    return False


def raw_path(path: str) -> str:
    """The path as the client sent it, about: granian gives it decoded, invalid UTF-8 replaced
    by U+FFFD, which becomes an invalid byte again so the path answers 1011 as on Tornado."""
    return quote(path, safe="/:@!$&'()*+,;=~").replace("%EF%BF%BD", "%FF")


# -- --http=granian -----------------------------------------------------------------------------


class GranianTransport:
    """granian, embedded in this process's event loop, serving ``RSGIApp``."""

    def __init__(self, server: TotoServer, application: TotoApplication) -> None:
        self.server = server
        self.app = RSGIApp(server, application)
        self.granian: Any = None
        self.task: asyncio.Task[None] | None = None

    async def listen(self, sockets: list[socket.socket] | None) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.server.embed import Server

        o = self.server.options
        address = o.address or "0.0.0.0"
        if sockets:
            # granian binds its own socket: the one given only says where (``TotoServer.start``
            # embedded with sockets; a --reuse_port group binds none for granian, toto.supervisor).
            address, port = sockets[0].getsockname()[:2]
            for sock in sockets:
                sock.close()
        else:
            # granian binds in its own thread, where a port in use is a panic: bind here first,
            # so that is one line (toto.daemon), and port 0 names a free port.
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if o.reuse_port:  # the group's other processes listen on it already
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                probe.bind((address, int(o.port)))
                port = probe.getsockname()[1]
            if int(o.port) == 0:
                o.port = port
                log.info("port 0: listening on free port %s", port)
        idle = float(o.idle_timeout)
        logging.getLogger("granian").setLevel(logging.DEBUG if self.server.debug else logging.ERROR)
        self.granian = Server(
            self.app,
            address=address,
            port=port,
            interface=Interfaces.RSGI,
            http=HTTPModes.http1,
            websockets=False,
            backlog=1024,
            # granian serves this many connections at once; the next wait to be accepted
            # (granian shows Toto no connection before its first request, so none is answered 503).
            backpressure=int(o.max_connections) or None,
            log_enabled=False,
            http1_settings=HTTP1Settings(
                header_read_timeout=int(idle * 1000) if idle else 3_600_000,
                # hyper answers 431 itself to a head that does not fit its read buffer (8 KiB at least).
                max_buffer_size=max(8192, head_read_limit(o.max_header_size)),
            ),
        )
        self.task = asyncio.ensure_future(self.granian.serve())
        await _until_listening(address, port, self.task)

    def stop_listening(self) -> None:
        if self.granian is not None:
            self.granian.interrupt_signal = True
            self.granian.main_loop_interrupt.set()

    async def close(self) -> None:
        self.stop_listening()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _until_listening(address: str, port: int, task: asyncio.Task[None], timeout: float = 30.0) -> None:
    host = "127.0.0.1" if address in ("0.0.0.0", "", "::") else address
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if task.done():
            task.result()
            raise RuntimeError("granian stopped while starting")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise RuntimeError(f"granian did not listen on {address}:{port} within {timeout:g}s")
