"""Coalescing the reads that requests start in one event-loop turn into one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReadBatcher(Generic[K, V]):
    """Collects ``read(key)`` calls made in one event-loop turn and answers them with one
    ``fetch(keys)`` on the next turn.

    Under load many requests load their session at about the same moment; one round trip
    for all of them (a pipeline, an ``IN (...)`` or ``$in`` query) costs the database and
    this process far less than one each. A lone read goes out by itself on the next turn,
    so an idle server pays one ``call_soon`` and nothing else.

    ``fetch`` gets the distinct keys in the order they were asked for and returns one
    value per key, in that order. When it raises, every read of the batch raises the same
    error.
    """

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        # Strong references, so a batch in flight is not garbage-collected.
        self._running: set[asyncio.Task[None]] = set()

    def read(self, key: K) -> asyncio.Future[V]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.append((key, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._answer(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        keys = list(dict.fromkeys(key for key, _ in batch))
        try:
            values = await self._fetch(keys)
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        by_key = dict(zip(keys, values))
        for key, future in batch:
            if not future.done():
                future.set_result(by_key[key])
