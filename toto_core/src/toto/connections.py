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

from toto.exceptions import ERROR_SERVICE_UNAVAILABLE

log = logging.getLogger("toto.server")

_FULL_BODY = json.dumps(
    {"error": {"code": ERROR_SERVICE_UNAVAILABLE, "value": "The server has too many open connections; retry shortly."}}
).encode()
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: " + str(len(_FULL_BODY)).encode() + b"\r\n\r\n" + _FULL_BODY
)
#: Tornado reads a request head up to this many times ``max_header_size`` (then closes without
#: a word): between the two, the handler can still answer 431 or 414.
HEAD_READ_FACTOR = 4


class LimitedHTTPServer(HTTPServer):
    """Tornado's ``HTTPServer`` that answers 503 (1013) and closes a connection beyond
    ``max_connections`` open ones, instead of serving every client that connects."""

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
