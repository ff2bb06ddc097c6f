"""What the ASGI and RSGI faces share: a writer that queues what the request path writes
while sending is awaited (``QueuedWriter``) and the driver of one request (``exchange``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException

if TYPE_CHECKING:
    from toto.handler import TotoHandler

from toto.transports.guards import BodyTimeouts


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
