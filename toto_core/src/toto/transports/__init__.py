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

import asyncio
import functools
import importlib.util
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tornado.escape import parse_qs_bytes
from tornado.httputil import HTTPFile, HTTPHeaders, HTTPServerRequest, split_host_and_port
from tornado.netutil import is_valid_ip

from toto.exceptions import ERROR_MALFORMED_REQUEST, PluginError, TotoException
from toto.response import canonical_header

if TYPE_CHECKING:
    import socket

    from toto.handler import TotoApplication, TotoHandler
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


class QueuedWriter:
    """What the ASGI and RSGI writers share: the path writes from plain code while sending
    is awaited, so what it writes queues here and ``pump`` sends it in order; ``watch``
    waits for the client going away (``gone``) in a task of its own. Once the client has
    gone (``closed``), nothing more is sent and ``pump`` returns: an answer that will never
    come must not hold its task (and a graceful stop) forever."""

    __slots__ = ("closed", "ended", "queue", "wakeup", "watcher")

    def __init__(self) -> None:
        self.ended = False
        self.closed = False
        self.queue: list[Any] = []
        self.wakeup: asyncio.Future[None] | None = None
        self.watcher: asyncio.Task[None] | None = None

    def queued(self, item: Any, last: bool) -> None:
        if item is not None:
            self.queue.append(item)
        if last:
            self.ended = True
        self._wake()

    def _wake(self) -> None:
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def client_gone(self) -> None:
        """The client went away: nothing more will be sent."""
        self.closed = True
        self._wake()

    def watch(self, callback: Callable[[], None] | None) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None
        if callback is not None:
            self.watcher = asyncio.ensure_future(self._watch(callback))

    async def _watch(self, callback: Callable[[], None]) -> None:
        await self.gone()
        self.client_gone()
        callback()

    async def gone(self) -> None:
        """Return once the client has gone away."""
        raise NotImplementedError

    async def deliver(self, item: Any) -> None:
        raise NotImplementedError

    async def pump(self) -> None:
        """Send what the path wrote until the answer ends or the client has gone."""
        while (not self.ended or self.queue) and not self.closed:
            queue = self.queue
            if queue:
                self.queue = []
                for item in queue:
                    await self.deliver(item)
                continue
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup


class TransportRequest(HTTPServerRequest):
    """``handler.request`` on a transport that is not Tornado's: Tornado's ``HTTPServerRequest``
    (what methods of the original read, attribute for attribute), without a connection, and
    with the query parsed only when something reads it."""

    def __init__(self, method: str, uri: str, headers: HTTPHeaders, remote_ip: str, protocol: str) -> None:
        # Not HTTPServerRequest.__init__: it parses the query and copies it deeply, per request.
        self.method = method
        self.uri = uri
        self.version = "HTTP/1.1"
        self.headers = headers
        self.body = b""
        self.remote_ip = remote_ip
        self.protocol = protocol
        self.host = headers.get("Host") or "127.0.0.1"
        self.files: dict[str, list[HTTPFile]] = {}
        self.connection = None
        self.server_connection = None
        self._start_time = time.time()
        self._finish_time = None
        self.path, _, self.query = uri.partition("?")
        self.body_arguments: dict[str, list[bytes]] = {}

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


T = TypeVar("T")


K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Deadlines of many things (the requests reading a body, a server's connections) kept
    by one check every ``interval`` instead of a timer each (``asyncio.timeout`` per request
    cost ~7% of an echo on granian, Tornado's ``gen.with_timeout`` per head and body 5-10%
    on Tornado). ``interval`` is a second, or half the shortest timeout when that is under
    two. A deadline counts from the last check's time plus one interval, so it is never
    early and at most two intervals late; ``expire(key)`` is called once it has passed.
    A timeout of 0: no deadline."""

    __slots__ = ("interval", "now", "task", "waiting")

    def __init__(self, *timeouts: float) -> None:
        shortest = min((t for t in timeouts if t), default=0.0)
        self.interval = min(1.0, shortest / 2)
        #: The loop's time at the last check (a deadline is counted from it: no clock read each).
        self.now = 0.0
        self.waiting: dict[K, float] = {}
        self.task: asyncio.Task[None] | None = None

    def set(self, key: K, seconds: float) -> None:
        if seconds:
            self.waiting[key] = self.now + seconds + self.interval
        else:
            self.waiting.pop(key, None)

    def clear(self, key: K) -> None:
        self.waiting.pop(key, None)

    def start(self) -> None:
        """Start checking (once, on the running loop); nothing to check without a timeout."""
        if self.task is None and self.interval:
            loop = asyncio.get_running_loop()
            self.now = loop.time()
            self.task = loop.create_task(self._check())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def expire(self, key: K) -> None:
        raise NotImplementedError

    def gone(self, key: K) -> bool:
        """``key`` needs no deadline any more (dropped without expiring)."""
        return False

    def sweep(self) -> None:
        """Before each check: what a subclass tidies."""

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        waiting = self.waiting
        while True:
            await asyncio.sleep(self.interval)
            now = self.now = loop.time()
            self.sweep()
            for key, deadline in list(waiting.items()):
                if self.gone(key):
                    del waiting[key]
                elif deadline <= now:
                    del waiting[key]
                    self.expire(key)


class BodyTimeouts(Deadlines["asyncio.Task[Any]"]):
    """The body timeout of every request of a process (granian, uvicorn): a body still
    unread ``seconds`` after it was awaited raises TimeoutError in its request."""

    __slots__ = ("expired", "seconds")

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.expired: set[asyncio.Task[Any]] = set()

    async def read(self, awaitable: Awaitable[T]) -> T:
        if not self.seconds:
            return await awaitable
        task = asyncio.current_task()
        assert task is not None
        self.start()
        self.set(task, self.seconds)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self.expired:
                self.expired.discard(task)
                raise asyncio.TimeoutError from None
            raise
        finally:
            self.clear(task)

    def expire(self, key: asyncio.Task[Any]) -> None:
        self.expired.add(key)
        key.cancel()


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


async def exchange(
    handler: TotoHandler, writer: QueuedWriter, read_body: Callable[[], Awaitable[bool]], bodies: BodyTimeouts
) -> None:
    """One request on a non-Tornado transport after ``begin``: read its body within
    ``body_timeout`` (``read_body`` feeds it to the handler; False: do not run it, because it
    was refused, did not arrive whole, or the client went away), run it, send what is left of
    the answer. A request whose client went away ends here, whatever it was waiting for."""
    try:
        if not handler.finished:
            try:
                run = await bodies.read(read_body())
            except asyncio.TimeoutError:
                handler.refuse(408, TotoException(ERROR_MALFORMED_REQUEST, "The request body came too slowly"))
                run = False
            if run and not handler.finished:
                try:
                    await handler.execute()
                except asyncio.CancelledError:
                    if not writer.closed:
                        raise
                    return  # the client went away and its call was cancelled (toto.calls.connection_gone)
            elif not handler.finished:
                return  # gone before its body arrived whole: there is no one to answer
        if not writer.ended or writer.queue:
            await writer.pump()
    finally:
        writer.watch(None)
