"""The interface of event buses, which carry events between requests and servers.

Every bus states what it promises as data (``EventBus.delivery``, a ``Delivery``), and
numbers the broadcast events it carries (a ``Position``: an epoch and a sequence), in the
shape of Centrifugo's history and recovery: a bus whose service keeps history (Redis
Streams, JetStream, a PostgreSQL table) can ``replay`` what came after a position; one
that keeps none says so (``Replay.complete`` is False: there is a gap). The contract kit
(``toto.testing.EventBusContract``) tests each promise on every bus.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

log = logging.getLogger("toto.events")

#: Encoded metadata larger than this is refused when sent and dropped when received.
MAX_METADATA = 16 * 1024
#: The longest epoch a bus may use (it travels with every event).
MAX_EPOCH = 64

Guarantee = Literal["at-most-once", "at-least-once"]
AT_MOST_ONCE: Guarantee = "at-most-once"
AT_LEAST_ONCE: Guarantee = "at-least-once"


@dataclass(frozen=True, order=True)
class Position:
    """Where a broadcast event stands in its bus's stream.

    ``seq`` counts the events of the stream (1, 2, 3, ...); ``epoch`` names the stream, and
    changes when the stream starts over and its earlier numbers mean nothing any more (the
    service lost its history: a restart without persistence, a failover that dropped the
    last writes). Positions of different epochs do not compare. For a bus whose
    ``Delivery.sequence`` is ``"publisher"`` each publisher is its own stream: the epoch
    names the publisher (one bus instance) and ``seq`` counts its broadcasts.
    """

    epoch: str
    seq: int

    def follows(self, other: Position | None) -> bool:
        """True when this event comes after ``other`` (always, when ``other`` is of another epoch or None)."""
        return other is None or other.epoch != self.epoch or self.seq > other.seq


@dataclass(frozen=True)
class Delivery:
    """A bus's delivery contract, as data: what its README states and the contract kit tests.

    - ``guarantee``: ``"at-most-once"`` (an event a server could not receive when it was
      sent is not delivered to it later) or ``"at-least-once"`` (the bus delivers it once
      the server is back, from the history it keeps, while the history still holds it).
      Either way a subscriber never receives an event twice: a bus that may hear one twice
      drops the second by its position.
    - ``sequence``: ``"bus"`` (one stream for the whole bus: every server receives the
      broadcasts of one epoch in ``seq`` order, numbered without holes) or
      ``"publisher"`` (each publisher numbers its own broadcasts; a server receives each
      publisher's in order, and publishers' events interleave as they arrive).
    - ``history``: ``replay`` returns events a server or a socket missed.
    - ``reconnect``: what a lost connection to the bus's service costs, in one sentence.

    ``broadcast=False`` events reach exactly one live server, in no particular order
    against broadcasts, and carry no position.
    """

    guarantee: Guarantee
    sequence: Literal["bus", "publisher"]
    history: bool
    reconnect: str

    def __post_init__(self) -> None:
        if self.guarantee not in (AT_MOST_ONCE, AT_LEAST_ONCE):
            raise ValueError(f"Delivery.guarantee must be {AT_MOST_ONCE!r} or {AT_LEAST_ONCE!r}")
        if self.sequence not in ("bus", "publisher"):
            raise ValueError("Delivery.sequence must be 'bus' or 'publisher'")
        if self.guarantee == AT_LEAST_ONCE and not self.history:
            raise ValueError("an at-least-once bus delivers what a server missed from its history: history=True")


@dataclass(frozen=True)
class Event:
    """An event as a bus hands it over (``replay`` returns these)."""

    name: str
    payload: bytes
    metadata: Mapping[str, str] | None = None
    position: Position | None = None


@dataclass(frozen=True)
class Replay:
    """What ``EventBus.replay(since)`` found: the events after ``since``, oldest first (at
    most ``limit``; ask again from the last one for more), and whether they follow
    ``since`` without a gap. ``complete`` is False when some events after ``since`` are
    gone: the history was trimmed past them, the stream started a new epoch (then
    ``events`` are the new epoch's, from its start), or the bus keeps no history."""

    events: list[Event] = field(default_factory=list)
    complete: bool = False


class EventCallback(Protocol):
    """Called on the event loop with each event this server receives. ``metadata`` is
    None for an event sent without any; ``position`` is None for a ``broadcast=False``
    event, and for one from a bus written before buses numbered events."""

    def __call__(
        self,
        name: str,
        payload: bytes,
        metadata: Mapping[str, str] | None = None,
        position: Position | None = None,
        /,
    ) -> None: ...


class EventBus(abc.ABC):
    """Moves serialized events between the servers of one deployment.

    ``publish(..., broadcast=True)`` reaches every subscribed server, this one
    included; ``broadcast=False`` reaches exactly one live server. Payloads are
    bytes already serialized by the core with a safe serializer. ``metadata`` (text
    keys and values, such as a W3C ``traceparent``) travels beside the payload; an
    event without metadata must keep the bytes it had before buses carried any, and
    the core passes ``metadata`` only when there is some, so a bus written before
    metadata existed keeps working. ``toto.testing.EventBusContract`` is the test
    suite every bus must pass.

    A bus declares ``delivery`` (its promise, see ``Delivery``), gives each broadcast
    a ``Position`` (returned by ``publish`` and passed to subscribers), and, when it
    keeps history, answers ``replay`` and ``position``.
    """

    #: What this bus promises: a class attribute, or set per instance when options change
    #: it. Every bus must have one (the contract kit checks it).
    delivery: Delivery

    async def open(self) -> None:
        """Connect. Called once before the first publish or subscribe."""

    @abc.abstractmethod
    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> Position | None:
        """Send an event (with ``metadata``, when given, for every receiver). Answers the
        broadcast's position, or None when it has none (``broadcast=False``)."""

    @abc.abstractmethod
    def subscribe(self, callback: EventCallback) -> None:
        """Deliver every event this server receives to
        ``callback(name, payload, metadata, position)`` on the event loop."""

    async def ping(self) -> bool:
        """True when the bus can carry events now (connected, subscribed); the health
        check (``/_health``) reports the bus as down otherwise. A bus that connects to a
        service must override it."""
        return True

    async def position(self) -> Position | None:
        """The position of the newest broadcast of the stream (where a new subscriber
        starts from, to replay later what it missed), or None when the bus cannot tell
        (no broadcast yet, or ``delivery.sequence`` is ``"publisher"``)."""
        return None

    async def replay(self, since: Position, limit: int = 100) -> Replay:
        """The broadcasts after ``since`` that the bus still holds (see ``Replay``). A bus
        without history answers an incomplete, empty replay: there may be a gap."""
        return Replay([], complete=False)

    async def close(self) -> None:
        """Stop receiving and release connections."""


# -- wire helpers shared by the buses ------------------------------------------------------------

_SEQ = struct.Struct(">Q")


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """Event metadata as bytes for a bus's wire format (a JSON object of strings)."""
    encoded = json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(encoded) > MAX_METADATA:
        raise ValueError(f"event metadata is {len(encoded)} bytes; at most {MAX_METADATA} travel with an event")
    return encoded


def decode_metadata(data: bytes) -> dict[str, str]:
    """The metadata of ``encode_metadata``; ``ValueError`` when it is not an object of strings."""
    if len(data) > MAX_METADATA:
        raise ValueError("event metadata is too large")
    value = json.loads(data.decode("utf-8"))
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("event metadata must be an object of strings")
    return value


_NAME_LENGTH = struct.Struct(">I")
_HAS_METADATA = 0x80000000


def encode_event(name: str, payload: bytes, metadata: Mapping[str, str] | None = None) -> bytes:
    """An event as one message, for buses that carry messages (Redis, PostgreSQL, NATS): the
    name's length (4 bytes, big-endian), the UTF-8 name and the payload. With metadata, the
    length's top bit is set and the metadata's length (4 bytes) and the metadata (JSON)
    follow the name; an event without metadata keeps the bytes it had before events carried any."""
    encoded = name.encode("utf-8")
    if not metadata:
        return _NAME_LENGTH.pack(len(encoded)) + encoded + payload
    extra = encode_metadata(metadata)
    return _NAME_LENGTH.pack(len(encoded) | _HAS_METADATA) + encoded + _NAME_LENGTH.pack(len(extra)) + extra + payload


def decode_event(message: bytes) -> tuple[str, bytes, dict[str, str] | None]:
    """The name, payload and metadata of ``encode_event``; ``ValueError`` when it is malformed."""
    try:
        (length,) = _NAME_LENGTH.unpack_from(message)
        start = _NAME_LENGTH.size
        end = start + (length & ~_HAS_METADATA)
        if end > len(message):
            raise ValueError("truncated event message")
        name = message[start:end].decode("utf-8")
        if not length & _HAS_METADATA:
            return name, message[end:], None
        (extra_length,) = _NAME_LENGTH.unpack_from(message, end)
    except (struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"malformed event message: {error}") from None
    extra_start = end + _NAME_LENGTH.size
    if extra_start + extra_length > len(message):
        raise ValueError("truncated event metadata")
    metadata = decode_metadata(message[extra_start : extra_start + extra_length])
    return name, message[extra_start + extra_length :], metadata


def encode_position(position: Position) -> bytes:
    """A position as bytes for a bus's wire format: the epoch's length (1 byte), the epoch
    (ASCII) and ``seq`` (8 bytes, big-endian)."""
    epoch = position.epoch.encode("ascii")
    if not 0 < len(epoch) <= MAX_EPOCH:
        raise ValueError(f"an epoch is 1 to {MAX_EPOCH} ASCII characters, got {position.epoch!r}")
    return bytes([len(epoch)]) + epoch + _SEQ.pack(position.seq)


def decode_position(data: bytes, offset: int = 0) -> tuple[Position, int]:
    """The position of ``encode_position`` at ``offset``, and the offset after it; ``ValueError`` when truncated."""
    if offset >= len(data):
        raise ValueError("truncated event position")
    length = data[offset]
    end = offset + 1 + length + _SEQ.size
    if not 0 < length <= MAX_EPOCH or end > len(data):
        raise ValueError("truncated event position")
    epoch = data[offset + 1 : offset + 1 + length].decode("ascii")
    (seq,) = _SEQ.unpack_from(data, offset + 1 + length)
    return Position(epoch, seq), end


class Reconnects:
    """One listening loop's bookkeeping between a lost connection and the next try: a wait
    that doubles from ``first`` to ``most`` seconds, a warning when the connection is lost
    (each time, or only the first of a run with ``warn_each=False``) and one when it is back.
    Every bus plugin's listener uses it, so they all back off and log alike."""

    def __init__(self, logger: logging.Logger, first: float = 0.1, most: float = 2.0) -> None:
        self.log = logger
        self.first = first
        self.most = most
        self.delay = first
        self.lost = False

    def back(self, message: str, *args: object) -> None:
        """The connection works: log ``message`` if it had been lost, and wait little next time."""
        if self.lost:
            self.log.warning(message, *args)
        self.lost = False
        self.delay = self.first

    async def lost_it(self, error: BaseException, message: str, *args: object, warn_each: bool = True) -> None:
        """The connection failed with ``error``: log ``message`` with it, then wait before the next try."""
        if warn_each or not self.lost:
            self.log.warning(message + " (%s: %s); reconnecting", *args, type(error).__name__, error)
        self.lost = True
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)


async def stop_tasks(tasks: list[asyncio.Task[None]], patience: float = 1.0) -> None:
    """Cancel a bus's listening tasks and wait until each has ended.

    A cancel can be lost (before Python 3.12, ``asyncio.wait_for`` swallows one that arrives as
    its inner wait completes), and a listener that loses it would keep a ``close()`` waiting
    for ever: each task is cancelled again every ``patience`` seconds until it is done."""
    for task in tasks:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=patience)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an event bus's task ended with %r", task.exception())


def deliver_to(callbacks: list[EventCallback], event: Event, bus: str) -> None:
    """Call every subscriber with ``event``; a subscriber that fails is logged, never stops the others."""
    metadata = dict(event.metadata) if event.metadata else None
    for callback in callbacks:
        try:
            callback(event.name, event.payload, metadata, event.position)
        except Exception:
            log.exception("%s: a subscriber failed on event %r", bus, event.name)


class StreamFollower:
    """Hands the events of one ``"bus"``-sequenced stream to subscribers once each, in
    order, filling gaps from the bus's history: what Redis, PostgreSQL and JetStream
    buses share.

    ``receive`` takes each event as it arrives live. One that was delivered already (the
    same or an earlier position) is dropped; one that skips numbers first has the
    missing ones fetched with ``replay`` and delivered. ``catch_up`` does the same after a
    reconnect, when what was missed shows no sign yet. What history no longer holds is
    logged as a gap, once per gap.
    """

    def __init__(
        self,
        deliver: Callable[[Event], None],
        replay: Callable[[Position, int], Awaitable[Replay]] | None,
        bus: str,
        page: int = 100,
    ) -> None:
        self._deliver = deliver
        self._replay = replay
        self.bus = bus
        self.page = page
        #: The newest position delivered.
        self.last: Position | None = None
        #: Events found missing (for tests and the log).
        self.gaps = 0

    async def receive(self, event: Event) -> None:
        position = event.position
        if position is None:
            self._deliver(event)
            return
        if not position.follows(self.last):
            return  # heard twice: delivered already
        if self.last is not None and (position.epoch != self.last.epoch or position.seq > self.last.seq + 1):
            await self.catch_up()
            if not position.follows(self.last):
                return
        self._hand_over(event)

    async def catch_up(self) -> None:
        """Deliver what history holds after the newest delivered event (after a reconnect)."""
        if self.last is None or self._replay is None:
            return
        first_page = True
        while True:
            replay = await self._replay(self.last, self.page)
            if first_page and not replay.complete:
                self.gaps += 1
                log.warning(
                    "%s: events after %s:%d may be lost (the history was trimmed past them, or the stream "
                    "started a new epoch); delivering from where it resumes",
                    self.bus,
                    self.last.epoch,
                    self.last.seq,
                )
            first_page = False
            last = self.last
            fresh = [event for event in replay.events if event.position is not None and event.position.follows(last)]
            for event in fresh:
                self._hand_over(event)
            if len(replay.events) < self.page or not fresh:
                return

    def _hand_over(self, event: Event) -> None:
        self.last = event.position
        self._deliver(event)
