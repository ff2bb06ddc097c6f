"""A TCP proxy that a test can cut, black-hole and restore, to fault a database without stopping it.

It runs its own event loop in a thread so that synchronous tests (and servers in
other processes) can use it alike::

    with TcpProxy("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        proxy.cut()        # drop every connection; new ones are closed at once
        proxy.blackhole()  # drop every connection; new ones are accepted and never answered
        proxy.freeze()     # keep every connection open but pass nothing either way (a silent network)
        proxy.delay(0.2)   # forward, each chunk 0.2 s late in either direction (a slow link)
        proxy.restore()    # forward again, without delay
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

FORWARD, CUT, BLACKHOLE, FREEZE = "forward", "cut", "blackhole", "freeze"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.mode = FORWARD
        #: Seconds each forwarded chunk waits before it is passed on (``delay``).
        self.latency = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        # Connections accepted while black-holed or frozen: they never reach the target.
        self._held: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> int:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        async def shutdown() -> None:
            self._drop_all()
            if self._server is not None:
                self._server.close()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def cut(self) -> None:
        self._set_mode(CUT)

    def blackhole(self) -> None:
        self._set_mode(BLACKHOLE)

    def freeze(self) -> None:
        self._set_mode(FREEZE)

    def restore(self) -> None:
        self.latency = 0.0
        self._set_mode(FORWARD)

    def delay(self, seconds: float) -> None:
        """Forward, holding every chunk ``seconds`` in either direction (``restore`` ends it)."""
        if seconds < 0:
            raise ValueError("a delay is 0 seconds or more")
        self._set_mode(FORWARD)
        self.latency = seconds

    def _set_mode(self, mode: str) -> None:
        async def apply() -> None:
            self.mode = mode
            if mode in (CUT, BLACKHOLE):
                self._drop_all()
            elif mode == FORWARD:
                # What they sent is gone, so they could only wait for the client's timeout; a
                # network that heals lets a waiting connect through, so the client must be free
                # to connect again at once (pymongo's monitor otherwise waits a whole timeout).
                for writer in list(self._held):
                    writer.transport.abort()
                self._held.clear()

        self._call(apply())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == CUT:
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode in (BLACKHOLE, FREEZE):
            # Read and discard until the client gives up or the proxy is restored.
            self._held.add(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            self._held.discard(writer)
            self._writers.discard(writer)
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        for side in (writer, upstream_writer):
            self._writers.discard(side)
            side.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if self.mode == FREEZE:
                    continue  # swallowed: the other side hears nothing, and nothing is closed
                if self.mode != FORWARD:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
