"""The HTTP faces of a server: each parses HTTP and hands requests to the one request path.

``--http=tornado`` (the default: Tornado's ``HTTPServer``, which the original was built on,
and the only one that also serves WebSockets), ``--http=granian`` (granian's RSGI interface,
Rust; ``pip install 'toto-core[granian]'``) or ``--http=uvicorn`` (ASGI on uvicorn with
httptools and uvloop; ``pip install 'toto-core[uvicorn]'``). Each transport gives the path
(``toto.handler``) a request object and a ``ResponseWriter``; nothing else of it reaches the
path. ``toto.asgi.app`` serves the same path to any other ASGI server.

A transport is made once per process, after storage and plugins have started:
``listen(sockets)`` serves (on ``sockets`` when given, else on the options' address and
port), ``stop_listening()`` refuses new connections when a drain begins, ``close()`` ends
what is left once in-flight requests have finished (or ``drain_timeout`` passed).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Protocol

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.netutil import is_valid_ip

from toto.exceptions import PluginError

if TYPE_CHECKING:
    import socket

    from toto.handler import TotoApplication
    from toto.server import TotoServer

#: ``--http`` choices, and the module that must be importable for each.
TRANSPORTS = {"tornado": "tornado", "granian": "granian", "uvicorn": "uvicorn"}


class Transport(Protocol):
    async def listen(self, sockets: list[socket.socket] | None) -> None: ...

    def stop_listening(self) -> None: ...

    async def close(self) -> None: ...


def check_transport(server: TotoServer) -> None:
    """At startup, before anything is opened: the transport is installed and can serve the options."""
    name = server.options.http
    if importlib.util.find_spec(TRANSPORTS[name]) is None:
        raise PluginError(f"--http={name} is not installed here: pip install 'toto-core[{name}]'")
    if name != "tornado" and server.options.use_web_sockets:
        raise PluginError(f"use_web_sockets needs --http=tornado (--http={name} serves HTTP calls only)")


def make_transport(server: TotoServer, application: TotoApplication) -> Any:
    name = server.options.http
    if name == "granian":
        from toto.transports.rsgi import GranianTransport

        return GranianTransport(server, application)
    if name == "uvicorn":
        from toto.transports.asgi import UvicornTransport

        return UvicornTransport(server, application)
    from toto.transports.tornado import TornadoTransport

    return TornadoTransport(server, application)


def build_request(
    method: str,
    uri: str,
    headers: HTTPHeaders,
    client: str,
    scheme: str,
    xheaders: bool,
) -> HTTPServerRequest:
    """``handler.request`` for a transport that is not Tornado's: the same object (Tornado's
    ``HTTPServerRequest``, what methods of the original read), without a connection.

    With ``xheaders`` the client address is the one a proxy in front names (X-Real-Ip, else
    the last X-Forwarded-For), as Tornado's ``HTTPServer(xheaders=True)`` reads it."""
    request = HTTPServerRequest(method=method, uri=uri, version="HTTP/1.1", headers=headers)
    if xheaders:
        forwarded = headers.get("X-Forwarded-For")
        named = headers.get("X-Real-Ip") or (forwarded.split(",")[-1].strip() if forwarded else "")
        if named and is_valid_ip(named):
            client = named
        proto = headers.get("X-Scheme") or headers.get("X-Forwarded-Proto")
        if proto in ("http", "https"):
            scheme = proto
    request.remote_ip = client
    request.protocol = scheme
    return request
