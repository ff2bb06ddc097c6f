"""Limits on the connections of the Tornado transport: how many, how long, how large.

Tornado's own defaults suit a server behind a trusted proxy (an hour to send headers,
no bound on open connections, a silent close for an oversized head); a server facing
clients directly needs them in seconds and counts, and answers that say what went wrong.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import iostream
from tornado.httpserver import HTTPServer

from toto.exceptions import ERROR_MALFORMED_REQUEST, ERROR_SERVICE_UNAVAILABLE

log = logging.getLogger("toto.server")


def _closing_answer(status: bytes, code: int, message: str, extra: bytes = b"") -> bytes:
    """A whole HTTP answer in the protocol's shape, after which the connection closes."""
    body = json.dumps({"error": {"code": code, "value": message}}).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nConnection: close\r\n" + extra
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


_FULL = _closing_answer(
    b"503 Service Unavailable",
    ERROR_SERVICE_UNAVAILABLE,
    "The server has too many open connections; retry shortly.",
    b"Retry-After: 1\r\n",
)
#: What Tornado writes for a request head it cannot parse, and what Toto sends instead.
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_SHAPED_400 = _closing_answer(b"400 Bad Request", ERROR_MALFORMED_REQUEST, "Malformed HTTP request head.")
#: Tornado reads a request head up to this many times ``max_header_size`` (then closes without
#: a word): between the two, the handler can still answer 431 or 414.
HEAD_READ_FACTOR = 4


class LimitedHTTPServer(HTTPServer):
    """Tornado's ``HTTPServer`` that answers 503 (1013) and closes a connection beyond
    ``max_connections`` open ones, instead of serving every client that connects, and
    answers a request head it cannot parse in the protocol's shape (400/1011) instead of
    Tornado's bare status line, which clients that read the JSON error cannot parse.
    """

    max_connections = 0
    _refused = 0

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        if self.max_connections and len(self._connections) >= self.max_connections:
            if self._refused % 1000 == 0:
                log.warning("refusing connections beyond max_connections=%d (503)", self.max_connections)
            self._refused += 1
            try:
                stream.write(_FULL).add_done_callback(lambda _: stream.close())
            except iostream.StreamClosedError:
                pass
            return
        write = stream.write

        # Tornado writes its refusal straight onto the stream, deep in HTTP1Connection.
        def shaped_write(data: Any) -> Any:
            return write(_SHAPED_400 if data == _BARE_400 else data)

        stream.write = shaped_write  # type: ignore[method-assign]
        super().handle_stream(stream, address)


def make_http_server(app: Any, options: Any, max_body_size: int) -> LimitedHTTPServer:
    """The transport's server with the options' timeouts and limits."""
    server = LimitedHTTPServer(
        app,
        xheaders=bool(options.xheaders),
        max_body_size=max_body_size,
        # Tornado waits this long for a complete request head, on a new connection and between
        # the requests of a kept-alive one: the idle and the header timeout are one timer here.
        idle_connection_timeout=float(options.idle_timeout) or None,
        body_timeout=float(options.body_timeout) or None,
        max_header_size=int(options.max_header_size) * HEAD_READ_FACTOR,
    )
    server.max_connections = int(options.max_connections)
    return server
