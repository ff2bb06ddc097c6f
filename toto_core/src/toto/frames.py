"""Messages a socket has begun and not finished: a deadline for each, a bound for the process.

Tornado's WebSocket protocol keeps the frames of a fragmented message (and the bytes of a
frame still arriving) until the last one comes, bounded only per message
(``socket_max_message``). A client that starts messages and never ends them, answering
pings meanwhile, would hold that much per socket for as long as it likes: 10,000 sockets of
1 MiB are 10 GiB. So, per process:

- a message must be complete within ``socket_message_timeout`` seconds of its first frame;
- all messages being received at once hold at most ``socket_max_unfinished`` bytes,
  counted before a frame's payload is read (so nothing beyond it is ever allocated);

and a socket that breaks either is closed with 1013 (try again later).

How: Tornado reads each frame with ``WebSocketProtocol13._read_bytes(n)`` in the order
RFC 6455 section 5.2 lays a frame out (two header bytes, an extended length of 2 or 8
bytes, a 4-byte mask, the payload). ``FrameWatch`` stands in for that one method of one
socket's protocol and follows the same layout, so it knows each frame's opcode, FIN bit
and payload length before the payload is read. Tornado offers no public seam for this
(its ``websocket_max_message_size`` is per message, and ``on_message`` sees only complete
ones); reading through ``_read_bytes`` touches the smallest private part of it, and a read
that does not fit the layout (a Tornado that reads frames otherwise) closes the socket
with 1011 and logs why, so the guard can never be skipped silently. ``nox -s latest``
runs the tests on Tornado's newest release.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("toto.websocket")

#: Close codes used here (RFC 6455 section 7.4.1).
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013

_CONTINUATION, _TEXT, _BINARY = 0x0, 0x1, 0x2

Close = Callable[[int, str], None]


def frame_reading_followed() -> bool:
    """Whether this Tornado reads WebSocket frames through the method ``FrameWatch`` follows
    (checked once at startup, so a server never runs without the guard)."""
    from tornado.websocket import WebSocketProtocol13

    return asyncio.iscoroutinefunction(getattr(WebSocketProtocol13, "_read_bytes", None))


class UnfinishedMessages:
    """One process's account of the bytes its sockets hold of messages not yet complete.

    ``limit`` bytes at most (0: no bound); ``timeout`` seconds per message (0: none).
    ``held`` is what is held now; ``peak`` the most ever held (for tests and metrics).
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = max(0, int(limit))
        self.timeout = max(0.0, float(timeout))
        self.held = 0
        self.peak = 0

    def watch(self, protocol: Any, close: Close) -> FrameWatch:
        """Follow the frames ``protocol`` (a Tornado ``WebSocketProtocol13``) reads;
        ``close(code, reason)`` closes its socket."""
        return FrameWatch(self, protocol, close)


class FrameWatch:
    """One socket's frames as its protocol reads them (see the module docstring)."""

    __slots__ = ("_data", "_final", "_read", "_steps", "_timer", "close", "held", "ledger", "protocol")

    def __init__(self, ledger: UnfinishedMessages, protocol: Any, close: Close) -> None:
        self.ledger = ledger
        self.protocol = protocol
        self.close = close
        #: Bytes this socket holds of the message it is receiving.
        self.held = 0
        self._read: Callable[[int], Awaitable[bytes]] = protocol._read_bytes
        #: The reads left of the frame being read: (what, bytes); the payload's size is
        #: known once its length is read. Empty: the next read is a frame header.
        self._steps: list[list[Any]] = []
        self._data = False  # the frame being read is part of a message (not a control frame)
        self._final = False  # ... and it is the message's last
        self._timer: asyncio.TimerHandle | None = None
        protocol._read_bytes = self.read

    async def read(self, n: int) -> bytes:
        what, size = self._steps.pop(0) if self._steps else ("head", 2)
        if n != size:
            self._give_up(f"Tornado read {n} bytes where a frame's {what} has {size}")
        elif what == "payload" and self._data and n:
            ledger = self.ledger
            if ledger.limit and ledger.held + n > ledger.limit:
                log.warning(
                    "closing a socket: messages being received would hold more than socket_max_unfinished=%d bytes",
                    ledger.limit,
                )
                self._cut("too many unfinished messages on this server; try again later")
            else:
                self._charge(n)
        data = await self._read(n)
        if what == "head":
            self._head(data)
        elif what == "length":
            self._steps[-1][1] = struct.unpack("!H" if n == 2 else "!Q", data)[0]
        elif what == "payload" and self._data and self._final:
            self.end()  # the message is complete: Tornado hands it to on_message now
        return data

    def _head(self, data: bytes) -> None:
        first, second = data[0], data[1]
        opcode = first & 0x0F
        self._final = bool(first & 0x80)
        self._data = opcode in (_CONTINUATION, _TEXT, _BINARY)
        length = second & 0x7F
        steps: list[list[Any]] = []
        if length >= 126:
            steps.append(["length", 2 if length == 126 else 8])
        if second & 0x80:
            steps.append(["mask", 4])
        steps.append(["payload", length if length < 126 else None])
        self._steps = steps
        if opcode in (_TEXT, _BINARY) and self._timer is None and self.ledger.timeout:
            self._timer = asyncio.get_running_loop().call_later(self.ledger.timeout, self._too_slow)

    def _charge(self, n: int) -> None:
        self.held += n
        ledger = self.ledger
        ledger.held += n
        if ledger.held > ledger.peak:
            ledger.peak = ledger.held

    def end(self) -> None:
        """The message is complete, or the socket closed: give back what it held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ledger.held -= self.held
        self.held = 0

    def _too_slow(self) -> None:
        self._timer = None
        log.warning("closing a socket: a message not completed within socket_message_timeout=%gs", self.ledger.timeout)
        self._cut(f"message not completed within {self.ledger.timeout:g} seconds")

    def _give_up(self, why: str) -> None:
        log.error("closing a socket: %s; toto.frames no longer follows this Tornado's frame reading", why)
        self.close(CLOSE_INTERNAL_ERROR, "server error")
        self._drop()

    def _cut(self, reason: str) -> None:
        """Close with 1013 and drop the connection at once: what it sent is not read on."""
        self.close(CLOSE_TRY_AGAIN, reason)
        self._drop()

    def _drop(self) -> None:
        # The close frame is written first; closing the stream then ends the read that is
        # waiting (Tornado's frame loop ends and the socket's on_close runs).
        stream = getattr(self.protocol, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()
        self.end()
