"""The ``nats`` event bus: events between servers through NATS (nats-py).

Two ways to carry broadcasts, chosen by ``nats_jetstream``:

- **core NATS** (the default): a broadcast is one message on ``<prefix>.broadcast``, which
  every server subscribes to. NATS keeps nothing: a server that is not connected when a
  broadcast goes out never gets it (at most once). Each publisher numbers its broadcasts
  (the epoch names the publisher, one bus instance), and NATS delivers one publisher's
  messages to a subscriber in the order they were sent.
- **JetStream**: broadcasts go into a stream (``nats_stream``, keeping
  ``nats_event_history`` of them), which numbers them: one sequence for the bus. Every
  server follows the stream with an ordered consumer from where it started, and a server
  that lost its connection goes on from its last one (at least once, while the stream
  holds them). Each message carries a ``Nats-Msg-Id``, so a publish retried after a lost
  acknowledgement is stored once (JetStream's de-duplication window).

Events for one server (``broadcast=False``) go to ``<prefix>.unicast`` in a queue group,
so NATS hands each to exactly one subscribed server; with none subscribed it is dropped.

A message is the core's event framing (``toto.eventbus.encode_event``). A payload too
large for one NATS message (the server's ``max_payload``, 1 MB by default) is put in a
JetStream object store and the message names it (header ``Toto-Object``); that needs
JetStream on the server, in either mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from toto.eventbus import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    Delivery,
    Event,
    EventBus,
    EventCallback,
    Position,
    Replay,
    StreamFollower,
    decode_event,
    deliver_to,
    encode_event,
)
from toto.exceptions import PluginError, StorageUnavailable
from toto.options import option_value
from toto.urls import redact_url

from toto_nats.defaults import (
    DEFAULT_HISTORY,
    DEFAULT_PAYLOAD_TTL,
    DEFAULT_SUBJECT_PREFIX,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
)

log = logging.getLogger("toto.nats")

#: Headers of the bus's messages.
EPOCH = "Toto-Epoch"
SEQ = "Toto-Seq"
OBJECT = "Toto-Object"
MSG_ID = "Nats-Msg-Id"
#: Room left in a message for headers and framing when deciding whether a payload fits.
HEADROOM = 4096
#: Seconds within which JetStream drops a message whose ``Nats-Msg-Id`` it has stored already.
DUPLICATE_WINDOW = 120.0
#: Attempts of a JetStream publish whose acknowledgement did not come (same ``Nats-Msg-Id``).
PUBLISH_ATTEMPTS = 2

_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")

#: Errors that mean "NATS cannot be used right now".
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    asyncio.TimeoutError,
    OSError,
)

CORE_DELIVERY = Delivery(
    guarantee=AT_MOST_ONCE,
    sequence="publisher",
    history=False,
    reconnect="broadcasts sent while a server is disconnected do not reach it (core NATS keeps nothing); a "
    "publisher's own sends wait in its client's buffer while it reconnects; broadcast=False events sent "
    "while no server is subscribed are dropped",
)


def jetstream_delivery(history: int) -> Delivery:
    return Delivery(
        guarantee=AT_LEAST_ONCE,
        sequence="bus",
        history=True,
        reconnect=f"nothing while the stream (the last {history} broadcasts, nats_event_history) still holds "
        "what a server missed: its consumer goes on from its last one; older ones are a gap, logged; "
        "broadcast=False events sent while no server is subscribed are dropped",
    )


@contextlib.asynccontextmanager
async def unavailable_on_fault(what: str) -> AsyncIterator[None]:
    """Turn "cannot reach NATS" into ``StorageUnavailable`` (answered 1013/503)."""
    try:
        yield
    except UNREACHABLE_ERRORS as error:
        raise StorageUnavailable(f"{what} is unavailable ({type(error).__name__}); try again shortly.") from error


def parse_servers(url: str) -> list[str]:
    """``nats://a:4222,b:4222`` (or ``nats://a:4222,nats://b:4222``): one URL per server."""
    servers = []
    for part in str(url).split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:
            part = "nats://" + part
        if not part.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise PluginError(
                f"event bus 'nats' needs a NATS URL, got {redact_url(part)!r}; use nats://host:4222[,host:4222...]"
            )
        servers.append(part)
    if not servers:
        raise PluginError("event bus 'nats' needs a NATS URL: --event_url=nats://host:4222[,host:4222...]")
    return servers


def name_of(prefix: str) -> str:
    """A JetStream name made from a subject prefix (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix).upper()


class NatsEventBus(EventBus):
    """Core NATS or JetStream for broadcasts, a queue group for events that one server takes."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        jetstream: bool = False,
        stream: str | None = None,
        history: int = DEFAULT_HISTORY,
        payload_ttl: float = DEFAULT_PAYLOAD_TTL,
    ) -> None:
        self.servers = parse_servers(url)
        if not _SUBJECT_PREFIX.match(subject_prefix):
            raise PluginError(
                f"nats_subject_prefix {subject_prefix!r} must be dot-separated tokens of letters, digits, _ and -"
            )
        if history < 1:
            raise PluginError(f"nats_event_history must be 1 or more, got {history}")
        self.timeout = float(timeout)
        self.jetstream = bool(jetstream)
        self.delivery = jetstream_delivery(history) if jetstream else CORE_DELIVERY
        self.subject = subject_prefix + ".broadcast"
        self.unicast_subject = subject_prefix + ".unicast"
        self.queue_group = subject_prefix + ".servers"
        self.stream = stream or name_of(subject_prefix)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.stream):
            raise PluginError(f"nats_stream {self.stream!r} must be letters, digits, _ and -")
        self.bucket = self.stream + "_payloads"
        self.history = int(history)
        self.payload_ttl = float(payload_ttl)
        #: The name of this bus's connection (NATS monitoring shows it).
        self.client_name = f"toto-events-{secrets.token_hex(4)}"
        self._callbacks: list[EventCallback] = []
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._objects: Any = None
        self._subscriptions: list[Any] = []
        self._connecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._closing = False
        # Core NATS: this publisher's own stream of numbers.
        self._publisher = secrets.token_hex(8)
        self._seq = 0
        self._ids = itertools.count(1)
        self._epoch = ""
        self._follower = StreamFollower(self._hand_over, self.replay, "nats event bus")

    @classmethod
    def from_options(cls, options: Any) -> NatsEventBus:
        return cls(
            url=str(option_value(options, "event_url", DEFAULT_URL)),
            subject_prefix=str(option_value(options, "nats_subject_prefix", DEFAULT_SUBJECT_PREFIX)),
            timeout=float(option_value(options, "nats_timeout", DEFAULT_TIMEOUT)),
            jetstream=bool(option_value(options, "nats_jetstream", False)),
            stream=option_value(options, "nats_stream", None),
            history=int(option_value(options, "nats_event_history", DEFAULT_HISTORY)),
            payload_ttl=float(option_value(options, "nats_payload_ttl", DEFAULT_PAYLOAD_TTL)),
        )

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._connect()
        except UNREACHABLE_ERRORS as error:
            # Serve anyway: sends answer 1013 until NATS is reachable; keep trying in the background.
            log.warning(
                "nats event bus: %s does not answer yet (%s); events wait until it does",
                ", ".join(redact_url(s) for s in self.servers),
                type(error).__name__,
            )
            self._connecting = asyncio.create_task(self._keep_connecting(), name="toto-nats-connect")

    async def _keep_connecting(self) -> None:
        delay = 0.2
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except UNREACHABLE_ERRORS:
                delay = min(delay * 2, 2.0)
                continue
            log.warning("nats event bus: connected to %s", self._connected_to())
            return

    async def _connect(self) -> None:
        nc = Client()
        try:
            # nats-py retries a first connection for as long as it retries reconnects (for ever
            # here): bound it, and let _keep_connecting try again.
            await asyncio.wait_for(self._start(nc), self.timeout * 2)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc = nc

    async def _start(self, nc: Client) -> None:
        await nc.connect(
            servers=self.servers,
            name=self.client_name,
            connect_timeout=max(1, round(self.timeout)),
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            ping_interval=5,
            max_outstanding_pings=2,
            allow_reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )
        await self._set_up_jetstream(nc)
        await self._subscribe(nc)

    async def _set_up_jetstream(self, nc: Client) -> None:
        """The stream (JetStream mode) and the object store for large payloads, made when missing.
        A server without JetStream still serves core NATS, refusing only payloads too large for it."""
        js = nc.jetstream(timeout=self.timeout)
        try:
            if self.jetstream:
                try:
                    info = await js.stream_info(self.stream)
                except nats.js.errors.NotFoundError:
                    info = await js.add_stream(
                        StreamConfig(
                            name=self.stream,
                            subjects=[self.subject],
                            max_msgs=self.history,
                            duplicate_window=DUPLICATE_WINDOW,
                            storage=StorageType.FILE,
                        )
                    )
                self._epoch = _epoch_of(info)
            try:
                self._objects = await js.object_store(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._objects = await js.create_object_store(self.bucket, ttl=self.payload_ttl)
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            if self.jetstream:
                raise PluginError(
                    f"nats_jetstream is on, but the NATS server at {self.servers[0]} has no JetStream: "
                    "start nats-server with -js (and a store directory, -sd)"
                ) from None
            self._objects = None
        self._js = js

    async def _subscribe(self, nc: Client) -> None:
        self._subscriptions = [
            await nc.subscribe(self.unicast_subject, queue=self.queue_group, cb=self._on_unicast),
        ]
        if not self.jetstream:
            self._subscriptions.append(await nc.subscribe(self.subject, cb=self._on_core_broadcast))
            # The server has the subscriptions once it answers a PING sent after them: what is
            # published after open() returns reaches this server.
            await nc.flush(timeout=max(1, round(self.timeout)))
            return
        assert self._js is not None
        if self._follower.last is None:
            self._follower.last = Position(self._epoch, await self._last_seq())
        start = self._follower.last.seq + 1 if self._follower.last.epoch == self._epoch else 1
        self._subscriptions.append(
            await self._js.subscribe(
                self.subject,
                stream=self.stream,
                cb=self._on_stream_broadcast,
                ordered_consumer=True,
                idle_heartbeat=2.0,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
            )
        )

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._nc is not None:
            with contextlib.suppress(Exception):  # closing a connection that may be broken already
                await asyncio.wait_for(self._nc.close(), self.timeout)
            self._nc = None

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("nats event bus: lost the connection to NATS; reconnecting")

    async def _reconnected(self) -> None:
        log.warning("nats event bus: reconnected to %s", self._connected_to())
        if self.jetstream:
            # The ordered consumer resumes by itself; this fills a gap it may leave.
            task = asyncio.ensure_future(self._catch_up_quietly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _catch_up_quietly(self) -> None:
        try:
            await self._follower.catch_up()
        except StorageUnavailable as error:
            log.warning("nats event bus: could not read the stream after a reconnect: %s", error)

    async def _error(self, error: Exception) -> None:
        if not self._closing:
            log.info("nats event bus: %s: %s", type(error).__name__, error)

    def _connected_to(self) -> str:
        url = getattr(self._nc, "connected_url", None) if self._nc is not None else None
        return redact_url(url.geturl()) if url is not None else "NATS"

    # -- publishing -------------------------------------------------------------------------
    def _client(self) -> Client:
        """The connection, when it is up: a send while it is down (or reconnecting) answers 1013 at
        once, rather than waiting in the client's buffer to go out later or never."""
        if self._nc is None or not self._nc.is_connected:
            raise StorageUnavailable("NATS event bus is not connected; try again shortly.")
        return self._nc

    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> Position | None:
        nc = self._client()
        headers: dict[str, str] = {}
        async with unavailable_on_fault("NATS event bus"):
            if len(payload) + len(name) + HEADROOM > nc.max_payload:
                headers[OBJECT] = await self._store_payload(name, payload)
                payload = b""
            data = encode_event(name, payload, metadata)
            if not broadcast:
                await nc.publish(self.unicast_subject, data, headers=headers or None)
                return None
            if self.jetstream:
                return await self._send(data, headers, f"{self._publisher}-{next(self._ids)}")
            self._seq += 1
            headers[EPOCH], headers[SEQ] = self._publisher, str(self._seq)
            await nc.publish(self.subject, data, headers=headers)
            return Position(self._publisher, self._seq)

    async def _send(self, data: bytes, headers: dict[str, str], msg_id: str) -> Position:
        """Store a broadcast in the stream, retrying a lost acknowledgement with the same
        ``Nats-Msg-Id`` (JetStream stores it once)."""
        assert self._js is not None
        headers = {**headers, MSG_ID: msg_id}
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                ack = await self._js.publish(
                    self.subject, data, timeout=self.timeout / PUBLISH_ATTEMPTS, stream=self.stream, headers=headers
                )
            except nats.errors.TimeoutError:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                continue
            return Position(self._epoch, int(ack.seq))
        raise AssertionError("unreachable")

    async def _store_payload(self, name: str, payload: bytes) -> str:
        if self._objects is None:
            assert self._nc is not None
            raise ValueError(
                f"event {name[:80]!r} is {len(payload)} bytes, more than this NATS server takes in one message "
                f"({self._nc.max_payload}, max_payload), and without JetStream there is nowhere to put it: raise "
                "max_payload in the server's configuration or enable JetStream (nats-server -js)"
            )
        key = f"{self._publisher}-{next(self._ids)}"
        await self._objects.put(key, payload)
        return key

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def ping(self) -> bool:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.flush(timeout=max(1, round(self.timeout)))
        except Exception:  # any fault means "not connected", which is the answer
            return False
        return True

    # -- history (JetStream) ----------------------------------------------------------------
    async def _last_seq(self) -> int:
        assert self._js is not None
        async with unavailable_on_fault("NATS event bus"):
            info = await self._js.stream_info(self.stream)
        self._epoch = _epoch_of(info)
        return int(info.state.last_seq)

    async def position(self) -> Position | None:
        if not self.jetstream:
            return None
        self._client()
        last = await self._last_seq()
        return Position(self._epoch, last) if last else None

    async def replay(self, since: Position, limit: int = 100) -> Replay:
        if not self.jetstream:
            return Replay([], complete=False)
        self._client()
        assert self._js is not None
        async with unavailable_on_fault("NATS event bus"):
            info = await self._js.stream_info(self.stream)
            epoch = self._epoch = _epoch_of(info)
            first, last = int(info.state.first_seq), int(info.state.last_seq)
            complete = since.epoch == epoch
            start = since.seq + 1 if complete else first
            if start < first:
                start, complete = first, False
            events: list[Event] = []
            for seq in range(start, min(last, start + max(1, limit) - 1) + 1):
                try:
                    raw = await self._js.get_msg(self.stream, seq=seq)
                except nats.js.errors.NotFoundError:
                    complete = False  # deleted since (the stream's limits)
                    continue
                event = await self._event_of(raw.data or b"", raw.headers, Position(epoch, seq))
                if event is None:
                    complete = False
                    continue
                events.append(event)
        return Replay(events, complete=complete and all(e.position is not None for e in events))

    # -- receiving --------------------------------------------------------------------------
    def _hand_over(self, event: Event) -> None:
        deliver_to(self._callbacks, event, "nats event bus")

    async def _event_of(
        self, data: bytes, headers: Mapping[str, str] | None, position: Position | None
    ) -> Event | None:
        """The event of a message, its payload fetched from the object store when it is there;
        None (logged) when it cannot be read."""
        try:
            name, payload, metadata = decode_event(data)
            stored = (headers or {}).get(OBJECT)
            if stored:
                if self._objects is None:
                    raise ValueError("the payload is in an object store this server cannot reach")
                payload = bytes((await self._objects.get(stored)).data or b"")
        except ValueError as error:
            log.warning("nats event bus: dropped a malformed message: %s", error)
            return None
        except nats.js.errors.NotFoundError:
            log.warning("nats event bus: the payload of an event is gone from the object store (nats_payload_ttl)")
            return None
        return Event(name, payload, metadata, position)

    async def _on_unicast(self, msg: Msg) -> None:
        event = await self._event_of(msg.data, msg.headers, None)
        if event is not None:
            self._hand_over(event)

    async def _on_core_broadcast(self, msg: Msg) -> None:
        headers = msg.headers or {}
        try:
            position = Position(headers[EPOCH], int(headers[SEQ]))
        except (KeyError, ValueError):
            log.warning("nats event bus: dropped a message without its position on %s", self.subject)
            return
        event = await self._event_of(msg.data, headers, position)
        if event is not None:
            self._hand_over(event)

    async def _on_stream_broadcast(self, msg: Msg) -> None:
        position = Position(self._epoch, int(msg.metadata.sequence.stream))
        event = await self._event_of(msg.data, msg.headers, position)
        if event is not None:
            await self._follower.receive(event)


def _epoch_of(info: Any) -> str:
    """A stream's epoch: made from its creation time, so a stream deleted and made again is a new one."""
    created = getattr(info, "created", None)
    seed = f"{info.config.name}:{created.isoformat() if created is not None else ''}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]
