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

Each face is registered through ``toto_register_transports`` (the core's in
``toto.builtins``); this package holds the three and what they share: ``guards`` (the
connection guards and deadlines), ``request`` (``handler.request`` for the faces that
are not Tornado), ``queued`` (the writer and the request driver of ASGI and RSGI).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Protocol

from toto.exceptions import PluginError

if TYPE_CHECKING:
    import socket

    from toto.handler import TotoApplication
    from toto.server import TotoServer


class Transport(Protocol):
    async def listen(self, sockets: list[socket.socket] | None) -> None: ...

    def stop_listening(self) -> None: ...

    async def close(self) -> None: ...


def check_transport(server: TotoServer) -> None:
    """At startup, before anything is opened: the transport is installed and can serve the options."""
    name = server.options.http
    face = server.transports[name]
    if face.module is not None and importlib.util.find_spec(face.module) is None:
        raise PluginError(f"--http={name} is not installed here: pip install {face.install}")
    if not face.sockets and server.options.use_web_sockets:
        serving = "|".join(n for n, f in server.transports.items() if f.sockets)
        raise PluginError(f"use_web_sockets needs --http={serving} (--http={name} serves HTTP calls only)")


def make_transport(server: TotoServer, application: TotoApplication) -> Any:
    """The ``--http`` face, made by its factory (``toto_register_transports``)."""
    return server.transports[server.options.http].make(server, application)
