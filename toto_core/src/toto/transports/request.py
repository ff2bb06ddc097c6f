"""``handler.request`` for the faces that are not Tornado: a ``TransportRequest`` in the shape of
Tornado's ``HTTPServerRequest``, over ``TransportHeaders`` collected in one pass."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tornado.escape import parse_qs_bytes
from tornado.httputil import HTTPFile, HTTPHeaders, HTTPServerRequest, split_host_and_port
from tornado.netutil import is_valid_ip

from toto.response import canonical_header

if TYPE_CHECKING:
    pass


class TransportRequest(HTTPServerRequest):
    """``handler.request`` on a transport that is not Tornado's: Tornado's ``HTTPServerRequest``
    (what methods of the original read, attribute for attribute), without a connection, and
    with the query parsed only when something reads it."""

    # The same for every request: class attributes, not stores per request.
    version = "HTTP/1.1"
    body = b""
    connection = None
    server_connection = None
    _finish_time = None

    def __init__(self, method: str, uri: str, headers: HTTPHeaders, remote_ip: str, protocol: str) -> None:
        # Not HTTPServerRequest.__init__: it parses the query and copies it deeply, per request.
        self.method = method
        self.uri = uri
        self.headers = headers
        self.remote_ip = remote_ip
        self.protocol = protocol
        self._start_time = time.time()
        self.path, _, self.query = uri.partition("?")

    @functools.cached_property
    def host(self) -> str:  # type: ignore[override]
        return self.headers.get("Host") or "127.0.0.1"

    @functools.cached_property
    def files(self) -> dict[str, list[HTTPFile]]:  # type: ignore[override]
        return {}

    @functools.cached_property
    def body_arguments(self) -> dict[str, list[bytes]]:  # type: ignore[override]
        return {}

    @functools.cached_property
    def arguments(self) -> dict[str, list[bytes]]:  # type: ignore[override]
        return parse_qs_bytes(self.query, keep_blank_values=True)

    @functools.cached_property
    def query_arguments(self) -> dict[str, list[bytes]]:  # type: ignore[override]
        return {name: list(values) for name, values in self.arguments.items()}

    @functools.cached_property
    def host_name(self) -> str:  # type: ignore[override]
        return split_host_and_port(self.host.lower())[0]


def build_request(
    method: str,
    uri: str,
    headers: HTTPHeaders,
    client: str,
    scheme: str,
    xheaders: bool,
) -> HTTPServerRequest:
    """``handler.request`` for a transport that is not Tornado's (``TransportRequest``).

    With ``xheaders`` the client address is the one a proxy in front names (X-Real-Ip, else
    the last X-Forwarded-For), as Tornado's ``HTTPServer(xheaders=True)`` reads it."""
    if xheaders:
        forwarded = headers.get("X-Forwarded-For")
        named = headers.get("X-Real-Ip") or (forwarded.split(",")[-1].strip() if forwarded else "")
        if named and is_valid_ip(named):
            client = named
        proto = headers.get("X-Scheme") or headers.get("X-Forwarded-Proto")
        if proto in ("http", "https"):
            scheme = proto
    return TransportRequest(method, uri, headers, client, scheme)


class TransportHeaders(HTTPHeaders):
    """``handler.request.headers`` on granian and uvicorn: Tornado's ``HTTPHeaders``, all of
    its interface (case-insensitive lookups, ``get_list``, ``get_all``, ``add``, names
    listed in ``Http-Header-Case``, several lines of a name joined by commas), over the
    lines as the server parsed and checked them, collected in one pass: building Tornado's
    own, a regular-expression check and a name normalization a line, was a tenth of an
    echo on granian. Its state is its own (``lines``: lower-cased name -> values), so no
    Tornado internals are relied on."""

    def __init__(self, lines: dict[str, list[str]] | None = None) -> None:
        # Not HTTPHeaders.__init__: every method that reaches the lines is this class's own.
        self.lines = {} if lines is None else lines

    def add(self, name: str, value: str, *, _chars_are_bytes: bool = True) -> None:
        HTTPHeaders().add(name, value, _chars_are_bytes=_chars_are_bytes)  # Tornado's checks of a line
        self.lines.setdefault(name.lower(), []).append(value)

    def get_list(self, name: str) -> list[str]:
        return self.lines.get(name.lower(), [])

    def get_all(self) -> Iterator[tuple[str, str]]:
        for name, values in self.lines.items():
            canonical = canonical_header(name)
            for value in values:
                yield canonical, value

    def get(self, name: str, default: Any = None) -> Any:  # not Mapping's, which goes through KeyError
        values = self.lines.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ",".join(values)

    def __getitem__(self, name: str) -> str:
        values = self.lines[name.lower()]
        return values[0] if len(values) == 1 else ",".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        self.lines[name.lower()] = [value]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.lines

    def __delitem__(self, name: str) -> None:
        del self.lines[name.lower()]

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[str]:
        return (canonical_header(name) for name in self.lines)

    def copy(self) -> HTTPHeaders:
        return TransportHeaders({name: list(values) for name, values in self.lines.items()})

    __copy__ = copy


def collect_headers(pairs: Iterable[tuple[str, str]]) -> tuple[TransportHeaders, int]:
    """A request's headers as ``handler.request.headers`` holds them, and the bytes of its
    header lines (name, ": ", value, CRLF) that ``max_header_size`` bounds."""
    lines: dict[str, list[str]] = {}
    size = 0
    for name, value in pairs:
        size += len(name) + len(value) + 4
        key = name.lower()  # lower-case already from both servers (HTTP/2's rule, ASGI's)
        values = lines.get(key)
        if values is None:
            lines[key] = [value]
        else:
            values.append(value)
    return TransportHeaders(lines), size
