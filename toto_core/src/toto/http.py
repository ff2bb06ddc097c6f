"""Toto's own small HTTP request and response objects, and routes that answer with them.

A route serves a fixed path below ``root`` that is not a method call: a health check,
a metrics page, the API explorer. Plugins (and the core) offer routes through the
``toto_register_routes`` hook. A route gets a ``Request`` and returns a ``Response``;
it never sees the transport that carried the request, so the same route works on
every HTTP face of the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from toto.serializers import JsonSerializer


@dataclass
class Request:
    """One HTTP request, independent of the server that parsed it.

    ``headers`` is case-insensitive for lookups (``headers.get("content-type")``);
    ``path`` is the URL path as sent, ``route_path`` the part below ``root``.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes = b""
    remote_ip: str = ""
    route_path: str = ""

    @property
    def query_arguments(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


@dataclass
class Response:
    """What a route answers: status, headers (by name) and the body bytes."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: object, status: int = 200) -> Response:
        return cls(status, JsonSerializer().encode(value), {"Content-Type": "application/json"})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})


RouteHandler = Callable[[Request], Response | Awaitable[Response]]


@dataclass
class Route:
    """``path`` (below ``root``, no leading slash, e.g. ``_health``) served by ``handler``
    for the HTTP verbs in ``methods``. A route wins over a method of the same name."""

    path: str
    handler: RouteHandler
    methods: tuple[str, ...] = ("GET", "HEAD")
    name: str = ""

    def __post_init__(self) -> None:
        self.path = self.path.strip("/")
        self.methods = tuple(m.upper() for m in self.methods)


@dataclass(frozen=True)
class TransportSpec:
    """One ``--http`` choice, offered through ``toto_register_transports``.

    ``make(server, application)`` builds the face once per serving process, after storage
    and plugins started: an object with ``async listen(sockets)`` (serve on ``sockets``
    when given, else on the options' address and port), ``stop_listening()`` (a drain
    begins) and ``async close()``. It turns bytes into requests for
    ``application.begin(request, writer, application.method_path(path), head_size)``,
    feeds the body to ``handler.data_received`` unless ``handler.finished``, runs
    ``await handler.execute()`` and writes what the ``writer`` (``start``, ``send``,
    ``watch``: ``toto.response.ResponseWriter``) is given. ``module``: an importable
    module the face needs, checked at startup (``install`` says how to get it);
    ``sockets``: it also serves ``use_web_sockets``.
    """

    make: Callable[[Any, Any], Any]
    module: str | None = None
    install: str = ""
    sockets: bool = False
