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
socket's protocol and follows the same layout, so it knows each frame's opcode and
payload length before the payload is read; a message ends when Tornado hands it to
``on_message``. Tornado offers no public seam for this (its
``websocket_max_message_size`` is per message, and ``on_message`` sees only complete
ones); reading through ``_read_bytes`` touches the smallest private part of it, and a read
that does not fit the layout (a Tornado that reads frames otherwise) closes the socket
with 1011 and logs why, so the guard can never be skipped silently. ``nox -s latest``
runs the tests on Tornado's newest release. Cost: about 2.4 µs a frame (one coroutine
and a dict entry a message), against some 100 µs a socket call takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.websocket import WebSocketProtocol13

log = logging.getLogger("toto.websocket")

#: Close codes used here (RFC 6455 section 7.4.1).
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013

_CONTINUATION, _TEXT, _BINARY = 0x0, 0x1, 0x2
#: What a frame's next read is (RFC 6455 section 5.2).
_HEAD, _LENGTH, _MASK, _PAYLOAD = range(4)

Close = Callable[[int, str], None]


def frame_head(length: int, binary: bool) -> bytes:
    """The head of an unmasked, unfragmented text or binary frame of ``length`` bytes (RFC 6455
    section 5.2), as a server sends it. Toto's sockets negotiate no extension (their handler
    offers no compression options), so nothing else transforms a frame."""
    first = 0x82 if binary else 0x81  # FIN and the opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def frame_reading_followed() -> bool:
    """Whether this Tornado reads WebSocket frames through the method ``FrameWatch`` follows
    (checked once at startup, so a server never runs without the guard)."""
    return asyncio.iscoroutinefunction(getattr(WebSocketProtocol13, "_read_bytes", None))


class UnfinishedMessages:
    """One process's account of the messages its sockets are receiving.

    ``limit`` bytes at most for all of them (0: no bound); ``timeout`` seconds for each
    (0: none). ``held`` is the bytes held now. One timer serves every deadline: messages
    are kept in the order they began, so only the oldest can be due (a timer a message
    would cost more than the rest of the guard).
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = max(0, int(limit))
        self.timeout = max(0.0, float(timeout))
        self.held = 0
        #: The sockets receiving a message, in the order their messages began, and when.
        self.receiving: dict[FrameWatch, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, protocol: Any, close: Close) -> FrameWatch:
        """Follow the frames ``protocol`` (a Tornado ``WebSocketProtocol13``) reads;
        ``close(code, reason)`` closes its socket."""
        return FrameWatch(self, protocol, close)

    def began(self, watch: FrameWatch) -> None:
        if self.timeout:
            self.receiving[watch] = time.monotonic()
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.timeout, self._sweep)

    def _sweep(self) -> None:
        """Cut the messages past their deadline; wait for the next one due."""
        self._timer = None
        now = time.monotonic()
        for watch, began in list(self.receiving.items()):
            if now - began < self.timeout:
                self._timer = asyncio.get_running_loop().call_later(began + self.timeout - now, self._sweep)
                return
            del self.receiving[watch]
            watch.too_slow()


class FrameWatch:
    """One socket's frames as its protocol reads them (see the module docstring).

    Only the two reads whose bytes say what follows (the header, an extended length) are
    looked at; the mask and the payload pass straight through, so the guard costs about one
    coroutine a frame. A message is complete when Tornado hands it to ``on_message``, which
    calls ``end``."""

    __slots__ = ("_data", "_masked", "_payload", "_read", "_stage", "close", "held", "ledger", "protocol")

    def __init__(self, ledger: UnfinishedMessages, protocol: Any, close: Close) -> None:
        self.ledger = ledger
        self.protocol = protocol
        self.close = close
        #: Bytes this socket holds of the message it is receiving.
        self.held = 0
        self._read: Callable[[int], Awaitable[bytes]] = protocol._read_bytes
        self._stage = _HEAD  # what the next read is
        self._data = False  # the frame being read is part of a message (not a control frame)
        self._masked = False
        self._payload = 0  # the length of the frame's payload (or of its extended length field)
        protocol._read_bytes = self.read

    def read(self, n: int) -> Awaitable[bytes]:
        stage = self._stage
        if stage == _HEAD:
            if n != 2:
                return self._give_up(f"Tornado read {n} bytes for a frame header of 2")
            return self._head()
        if stage == _LENGTH:
            if n != self._payload:
                return self._give_up(f"Tornado read {n} bytes for an extended length of {self._payload}")
            return self._length(n)
        if stage == _MASK:
            if n != 4:
                return self._give_up(f"Tornado read {n} bytes for a mask of 4")
            self._stage = _PAYLOAD
            return self._read(n)
        if n != self._payload:
            return self._give_up(f"Tornado read {n} bytes for a payload of {self._payload}")
        self._stage = _HEAD
        if self._data and n:
            ledger = self.ledger
            if ledger.limit and ledger.held + n > ledger.limit:
                log.warning(
                    "closing a socket: messages being received would hold more than socket_max_unfinished=%d bytes",
                    ledger.limit,
                )
                self._cut("too many unfinished messages on this server; try again later")
            else:
                self.held += n
                ledger.held += n
        return self._read(n)

    async def _head(self) -> bytes:
        data = await self._read(2)
        first, second = data[0], data[1]
        opcode = first & 0x0F
        self._data = opcode <= _BINARY  # continuation, text or binary: a message's frame
        self._masked = bool(second & 0x80)
        length = second & 0x7F
        if length >= 126:
            self._stage, self._payload = _LENGTH, 2 if length == 126 else 8
        else:
            self._stage, self._payload = _MASK if self._masked else _PAYLOAD, length
        if opcode == _TEXT or opcode == _BINARY:
            self.ledger.began(self)
        return data

    async def _length(self, n: int) -> bytes:
        data = await self._read(n)
        self._payload = int.from_bytes(data, "big")
        self._stage = _MASK if self._masked else _PAYLOAD
        return data

    def end(self) -> None:
        """The message is complete (``on_message``), or the socket closed: give back what it held."""
        ledger = self.ledger
        ledger.receiving.pop(self, None)
        ledger.held -= self.held
        self.held = 0

    def too_slow(self) -> None:
        log.warning("closing a socket: a message not completed within socket_message_timeout=%gs", self.ledger.timeout)
        self._cut(f"message not completed within {self.ledger.timeout:g} seconds")

    def _give_up(self, why: str) -> Awaitable[bytes]:
        """A read that does not fit the frame layout: this guard no longer knows what Tornado
        reads, so the socket is closed rather than left unguarded."""
        log.error("closing a socket: %s; toto.frames no longer follows this Tornado's frame reading", why)
        self.close(CLOSE_INTERNAL_ERROR, "server error")
        self._drop()
        return self._read(0)  # fails at once: the stream is closed

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
