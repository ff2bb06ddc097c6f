"""The connection guards every HTTP face shares (issue 23: a guard written per transport drifts).

What a face holds before a request reaches the request path, the same way on each:

- ``ConnectionDeadlines``: ``idle_timeout`` (a complete request head, on a new connection
  and between the requests of a kept-alive one) and ``body_timeout``, kept by the one
  ``Deadlines`` check a second, never a timer per request.
- ``head_read_limit``: how much of a head that never ends a face reads before it answers
  431 and closes (``HEAD_READ_FACTOR`` times ``max_header_size``; under it, the request path
  answers 431/414 itself from the head it was given).
- The answers a face writes before there is a request to answer through the path (a
  connection beyond ``max_connections``, a head it cannot parse or will not read to its
  end), whole, in the protocol's shape, with ``Connection: close``.

Faces where the HTTP library answers some of these itself, before Toto sees anything, say
so in docs/operations.md ("HTTP transports"); ``toto.testing.transport`` is the contract
every face passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from toto.exceptions import ERROR_MALFORMED_REQUEST, ERROR_SERVICE_UNAVAILABLE

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
        if self.task is None:
            self.start()
        # ``set`` and ``clear``, inline: this runs for every request.
        waiting = self.waiting
        waiting[task] = self.now + self.seconds + self.interval
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self.expired:
                self.expired.discard(task)
                raise asyncio.TimeoutError from None
            raise
        finally:
            waiting.pop(task, None)

    def expire(self, key: asyncio.Task[Any]) -> None:
        self.expired.add(key)
        key.cancel()


#: A face reads a request head up to this many times ``max_header_size`` before it gives up
#: on it (431, closed): between the two, the request path still answers 431 or 414 itself,
#: with the limit in its message.
HEAD_READ_FACTOR = 4


def head_read_limit(max_header_size: int) -> int:
    """Bytes of a request head a face reads before it answers 431 and closes."""
    return int(max_header_size) * HEAD_READ_FACTOR


def closing_answer(status: bytes, code: int, message: str, extra: bytes = b"") -> bytes:
    """A whole HTTP answer in the protocol's shape, after which the connection closes."""
    body = json.dumps({"error": {"code": code, "value": message}}).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nConnection: close\r\n" + extra
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


#: A connection beyond ``max_connections``.
CONNECTIONS_FULL = closing_answer(
    b"503 Service Unavailable",
    ERROR_SERVICE_UNAVAILABLE,
    "The server has too many open connections; retry shortly.",
    b"Retry-After: 1\r\n",
)
#: A request the HTTP parser refused (a bad request line or header, a malformed chunked body).
MALFORMED_REQUEST = closing_answer(b"400 Bad Request", ERROR_MALFORMED_REQUEST, "Malformed HTTP request.")
#: A request head that did not end within ``head_read_limit``.
HEAD_TOO_LARGE = closing_answer(
    b"431 Request Header Fields Too Large",
    ERROR_MALFORMED_REQUEST,
    "Request head larger than max_header_size.",
)
#: A request target the HTTP parser would not read (longer than it allows).
TARGET_TOO_LONG = closing_answer(
    b"414 URI Too Long", ERROR_MALFORMED_REQUEST, "Request target longer than max_request_line."
)


class Connection(Protocol):
    """What ``ConnectionDeadlines`` needs of a connection: Tornado's ``IOStream`` is one."""

    def __hash__(self) -> int: ...

    def close(self) -> None: ...

    def closed(self) -> bool: ...


C = TypeVar("C", bound=Connection)


class ConnectionDeadlines(Deadlines[C]):
    """``idle_timeout`` and ``body_timeout`` of every connection of a server, kept by one
    check. A connection still waiting for a request head or a body at its deadline is closed;
    while its request runs it has none."""

    __slots__ = ("body", "idle")

    def __init__(self, idle: float, body: float) -> None:
        super().__init__(idle, body)
        self.idle = idle
        self.body = body

    def awaiting_head(self, connection: C) -> None:
        self.set(connection, self.idle)

    def awaiting_body(self, connection: C) -> None:
        self.set(connection, self.body)

    def serving(self, connection: C) -> None:
        """The request is read: no deadline while its method runs."""
        self.clear(connection)

    def gone(self, key: C) -> bool:
        return key.closed()

    def expire(self, key: C) -> None:
        key.close()
