"""The ``redis`` event bus: events between every server of a deployment.

Broadcast events go through a pub/sub channel, which every subscribed server
hears. Events for exactly one server (``broadcast=False``) go onto a list that
every server pops with BLPOP, so each is taken by one live server; a server that
is down takes none. Each listener owns its connection, notices a dead one (Redis
restarted, a proxy cut it, a network that swallows packets) and reconnects and
resubscribes by itself, saying so in the log.

A message is the event name's length (4 bytes, big-endian), the UTF-8 name and the
payload bytes, which the core has already serialized with a safe serializer. An event
with metadata (a W3C ``traceparent``, say) sets the top bit of that length and puts the
metadata's length (4 bytes) and the metadata (a JSON object of strings) after the name.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Mapping
from typing import Any, cast

from toto.eventbus import EventBus, EventCallback, decode_metadata, encode_metadata
from toto.exceptions import PluginError
from toto.options import option_value

from toto_redis.connection import (
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    EXAMPLES,
    close_client,
    is_redis_url,
    make_client,
    normalize_prefix,
    redact,
    unavailable_on_fault,
)

log = logging.getLogger("toto.redis")

_NAME_LENGTH = struct.Struct(">I")
_HAS_METADATA = 0x80000000

#: Seconds a listener blocks on Redis before it checks whether it should stop.
POLL_SECONDS = 1.0
#: Seconds between PINGs on an idle subscription; no answer within ``timeout`` more means it is dead.
PING_SECONDS = 3.0
#: An undelivered unicast event is dropped after this long without any server taking events.
QUEUE_TTL_MS = 24 * 3600 * 1000


def encode_message(name: str, payload: bytes, metadata: Mapping[str, str] | None = None) -> bytes:
    encoded = name.encode("utf-8")
    if not metadata:
        return _NAME_LENGTH.pack(len(encoded)) + encoded + payload
    extra = encode_metadata(metadata)
    return _NAME_LENGTH.pack(len(encoded) | _HAS_METADATA) + encoded + _NAME_LENGTH.pack(len(extra)) + extra + payload


def decode_message(message: bytes) -> tuple[str, bytes, dict[str, str] | None]:
    (length,) = _NAME_LENGTH.unpack_from(message)
    start = _NAME_LENGTH.size
    end = start + (length & ~_HAS_METADATA)
    if end > len(message):
        raise ValueError("truncated event message")
    name = message[start:end].decode("utf-8")
    if not length & _HAS_METADATA:
        return name, message[end:], None
    (extra_length,) = _NAME_LENGTH.unpack_from(message, end)
    extra_start = end + _NAME_LENGTH.size
    if extra_start + extra_length > len(message):
        raise ValueError("truncated event metadata")
    metadata = decode_metadata(message[extra_start : extra_start + extra_length])
    return name, message[extra_start + extra_length :], metadata


class RedisEventBus(EventBus):
    """Pub/sub for broadcasts, a BLPOP-consumed list for events that one server takes."""

    #: Seconds between PINGs on an idle subscription (see ``PING_SECONDS``).
    ping_seconds = PING_SECONDS

    def __init__(
        self, url: str = DEFAULT_URL, prefix: str = DEFAULT_PREFIX + "events:", timeout: float = DEFAULT_TIMEOUT
    ):
        self.url = url
        self.prefix = normalize_prefix(prefix)
        self.timeout = timeout
        self.channel = self.prefix + "broadcast"
        self.queue = self.prefix + "queue"
        self._callbacks: list[EventCallback] = []
        self._client: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: asyncio.Event | None = None
        #: Whether the broadcast listener holds a live subscription right now (for ``ping``).
        self._listening = False
        self._closing = False

    @classmethod
    def from_options(cls, options: Any) -> RedisEventBus:
        url = option_value(options, "event_url", None)
        if url is None:
            database_url = option_value(options, "database_url", None)
            url = database_url if is_redis_url(database_url) else DEFAULT_URL
        elif not is_redis_url(url):
            raise PluginError(
                f"event bus 'redis' needs a Redis URL, got event_url={redact(str(url))!r}; use {EXAMPLES}"
            )
        prefix = option_value(options, "redis_event_prefix", None)
        if prefix is None:
            prefix = normalize_prefix(option_value(options, "redis_prefix", DEFAULT_PREFIX)) + "events:"
        return cls(url=url, prefix=prefix, timeout=float(option_value(options, "redis_timeout", DEFAULT_TIMEOUT)))

    async def open(self) -> None:
        self._client = make_client(self.url, self.timeout)
        self._subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen_broadcasts(), name="toto-redis-broadcasts"),
            asyncio.create_task(self._listen_queue(), name="toto-redis-queue"),
        ]
        try:
            # Broadcasts sent before the channel is subscribed would be missed by this server.
            await asyncio.wait_for(self._subscribed.wait(), self.timeout * 2)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            log.warning("redis event bus: %s does not answer yet; events wait until it does", redact(self.url))

    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> None:
        if self._client is None:
            raise RuntimeError("RedisEventBus.open() must be awaited before publish()")
        message = encode_message(name, payload, metadata)
        async with unavailable_on_fault("Redis event bus"):
            if broadcast:
                await self._client.publish(self.channel, message)
            else:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.rpush(self.queue, message)
                    pipe.pexpire(self.queue, QUEUE_TTL_MS)
                    await pipe.execute()

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def ping(self) -> bool:
        """Subscribed to the broadcast channel, and Redis answers a PING now (the listener
        alone would notice a cut only after ``ping_seconds``)."""
        if self._client is None or not self._listening:
            return False
        try:
            return bool(await self._client.ping())
        except Exception:  # any fault means "not connected", which is the answer
            return False

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if self._client is not None:
            await close_client(self._client)
            self._client = None

    def _deliver(self, message: bytes) -> None:
        try:
            name, payload, metadata = decode_message(message)
        except (ValueError, struct.error, UnicodeDecodeError):
            log.warning("redis event bus: dropped a malformed message on %s", self.prefix)
            return
        for callback in self._callbacks:
            try:
                callback(name, payload, metadata)
            except Exception:
                log.exception("redis event bus: a subscriber failed on event %r", name)

    async def _listen_broadcasts(self) -> None:
        lost = False
        delay = 0.1
        while not self._closing:
            # No retries inside redis-py: this loop reconnects and resubscribes itself, and logs it.
            client = make_client(self.url, self.timeout, retries=0)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                last_heard = last_ping = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=min(POLL_SECONDS, self.ping_seconds))
                    now = time.monotonic()
                    if message is not None:
                        last_heard = now
                        kind = message["type"]
                        if kind == "message":
                            self._deliver(message["data"])
                        elif kind == "subscribe":
                            if lost:
                                log.warning("redis event bus: resubscribed to %s on %s", self.channel, redact(self.url))
                                lost = False
                            delay = 0.1
                            self._listening = True
                            assert self._subscribed is not None
                            self._subscribed.set()
                    if now - last_ping >= self.ping_seconds:
                        await pubsub.ping()
                        last_ping = now
                    if now - last_heard > self.ping_seconds + self.timeout:
                        raise TimeoutError(f"no answer to PING for {now - last_heard:.1f}s")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a broken connection, or anything else: start over
                self._listening = False
                if self._closing:
                    break
                lost = True
                log.warning(
                    "redis event bus: lost the subscription to %s on %s (%s: %s); reconnecting",
                    self.channel,
                    redact(self.url),
                    type(error).__name__,
                    error,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                await _quietly(pubsub.aclose())
                await _quietly(close_client(client))

    async def _listen_queue(self) -> None:
        client = make_client(self.url, self.timeout, blocking_seconds=POLL_SECONDS, retries=0)
        lost = False
        delay = 0.1
        try:
            while not self._closing:
                try:
                    popped = await client.blpop([self.queue], timeout=POLL_SECONDS)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a broken connection, or anything else: start over
                    if not lost:
                        log.warning(
                            "redis event bus: lost the queue %s on %s (%s: %s); reconnecting",
                            self.queue,
                            redact(self.url),
                            type(error).__name__,
                            error,
                        )
                    lost = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if lost:
                    log.warning("redis event bus: listening to the queue %s again", self.queue)
                    lost = False
                    delay = 0.1
                if popped is not None:
                    self._deliver(cast(bytes, popped[1]))
        finally:
            await _quietly(close_client(client))


async def _quietly(closing: Any) -> None:
    """Close a connection that may already be broken, without letting that fail a reconnect."""
    try:
        await asyncio.wait_for(closing, 1.0)
    except (Exception, asyncio.CancelledError) as error:  # it is being thrown away
        log.debug("redis event bus: closing a broken connection failed: %r", error)
