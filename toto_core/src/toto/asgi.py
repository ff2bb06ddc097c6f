"""Toto as an ASGI application, for any ASGI server: ``uvicorn myapp:app``, ``granian
--interface asgi myapp:app``, hypercorn...

    # myapp.py
    import toto.asgi

    app = toto.asgi.app("toto.conf")  # or app(method_module="methods", database="sqlite", ...)

Options come as ``TotoServer``'s do (defaults, keyword arguments, the config file, then
the environment's ``TOTO_NAME`` variables; the command line is the ASGI server's, so it is
not read). The server opens storage, plugins
and the event bus at ASGI lifespan startup and closes them at shutdown, so the ASGI server
must run lifespan (uvicorn and granian do by default). WebSockets are served by
``toto serve`` on Tornado only. ``toto serve --http=uvicorn`` or ``--http=granian`` needs
none of this: it runs the server itself, with ``--processes``, daemon mode and the drain.
"""

from __future__ import annotations

from typing import Any

from toto.server import TotoServer
from toto.transports.asgi import ASGIApp

__all__ = ["ASGIApp", "app"]


def app(conf_file: str | None = None, **options: Any) -> ASGIApp:
    """An ASGI 3 application of a new ``TotoServer(conf_file, **options)``."""
    return ASGIApp(TotoServer(conf_file, argv=[], **options))
