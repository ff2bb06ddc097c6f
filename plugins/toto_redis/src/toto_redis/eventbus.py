"""The ``redis`` event bus: events between every server of a deployment.

Broadcast events are numbered, kept and published by one Lua script, atomically: the
script takes the next number from the bus's meta hash, appends the event to a capped
Redis Stream (the history, ``redis_event_history`` events) and publishes it on a pub/sub
channel (sharded pub/sub, SPUBLISH, on a Redis Cluster), which every subscribed server
hears. The three keys share a hash tag, so on a Cluster they live in one slot and the
script runs on the node that serves it.

A server delivers each broadcast once and in order (``toto.eventbus.StreamFollower``):
when a number is skipped (a message lost with a dropped connection) or the listener had
to reconnect, it reads what it missed from the history before going on. So the bus is
at least once, while the history holds the events and Redis keeps its data. Each
epoch is the stream's life on one primary: the script starts a new one when it finds a
primary it has not seen (Redis's replication id changed: a failover, or a restart that
lost the data), because the new primary may lack the last events and number new ones
as they were.

Events for exactly one server (``broadcast=False``) go onto a list that every server
pops with BLPOP, so each is taken by one live server; a server that is down takes none.
Each listener owns its connection, notices a dead one (Redis restarted, a proxy cut it,
a network that swallows packets, a Cluster slot that moved) and reconnects and
resubscribes by itself, saying so in the log.

A message is the event name's length (4 bytes, big-endian), the UTF-8 name and the
payload bytes, which the core has already serialized with a safe serializer. An event
with metadata (a W3C ``traceparent``, say) sets the top bit of that length and puts the
metadata's length (4 bytes) and the metadata (a JSON object of strings) after the name.
On the channel a broadcast is its position (``toto.eventbus.encode_position``) followed
by that message; the history keeps the message under the stream id ``0-<seq>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any, cast

from toto.eventbus import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    Delivery,
    Event,
    EventBus,
    EventCallback,
    Position,
    Reconnects,
    Replay,
    StreamFollower,
    decode_event,
    decode_position,
    deliver_to,
    encode_event,
    stop_tasks,
)
from toto.exceptions import PluginError, StorageUnavailable
from toto.options import option_value

from toto_redis.connection import (
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    EXAMPLES,
    client_of_slot,
    close_client,
    is_redis_url,
    make_client,
    normalize_prefix,
    redact,
    unavailable_on_fault,
    url_kind,
)
from toto_redis.defaults import DEFAULT_EVENT_HISTORY

log = logging.getLogger("toto.redis")

#: Seconds a listener blocks on Redis before it checks whether it should stop.
POLL_SECONDS = 1.0
#: Seconds between PINGs on an idle subscription; no answer within ``timeout`` more means it is dead.
PING_SECONDS = 3.0
#: An undelivered unicast event is dropped after this long without any server taking events.
QUEUE_TTL_MS = 24 * 3600 * 1000

# KEYS[1] meta hash, KEYS[2] history stream.  ARGV: 1 channel, 2 message, 3 an epoch to start,
# 4 history length (0: keep none), 5 '1' to publish sharded (SPUBLISH).  Answers {epoch, seq}.
_PUBLISH = """
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'replid', 'seq')
local epoch, seq = meta[1], tonumber(meta[3] or '0')
if not epoch then
  -- No stream yet, or its meta was lost: a history left without its numbers starts over.
  redis.call('DEL', KEYS[2])
end
if not epoch or meta[2] ~= replid then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'replid', replid, 'start', seq + 1)
end
seq = seq + 1
redis.call('HSET', KEYS[1], 'seq', seq)
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, '0-' .. seq, 'm', ARGV[2])
end
local packed, n = '', seq
for _ = 1, 8 do
  packed = string.char(n % 256) .. packed
  n = math.floor(n / 256)
end
local wire = string.char(#epoch) .. epoch .. packed .. ARGV[2]
if ARGV[5] == '1' then
  redis.call('SPUBLISH', ARGV[1], wire)
else
  redis.call('PUBLISH', ARGV[1], wire)
end
return {epoch, seq}
"""

# KEYS[1] meta hash, KEYS[2] history stream.  ARGV: 1 epoch of the last event seen, 2 its seq, 3 at most.
# Answers {epoch or false, complete (1/0), entries}.
_REPLAY = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'start', 'seq')
local epoch, start, top = meta[1], tonumber(meta[2] or '1'), tonumber(meta[3] or '0')
if not epoch then return {false, 0, {}} end
local from, complete = tonumber(ARGV[2]) + 1, 1
if ARGV[1] ~= epoch then from, complete = start, 0 end
if from > top then return {epoch, complete, {}} end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first == 0 or tonumber(string.match(first[1][1], '%-(%d+)$')) > from then complete = 0 end
return {epoch, complete, redis.call('XRANGE', KEYS[2], '0-' .. from, '+', 'COUNT', ARGV[3])}
"""


#: The message format is the core's (``toto.eventbus.encode_event``).
encode_message = encode_event
decode_message = decode_event


def decode_broadcast(wire: bytes) -> Event:
    """A broadcast as it travels on the channel: its position, then the message."""
    position, end = decode_position(wire)
    name, payload, metadata = decode_message(wire[end:])
    return Event(name, payload, metadata, position)


def with_history(history: int) -> Delivery:
    """What the bus promises when it keeps ``history`` events (0: none)."""
    if history > 0:
        return Delivery(
            guarantee=AT_LEAST_ONCE,
            sequence="bus",
            history=True,
            reconnect=f"nothing while the history (the last {history} broadcasts, redis_event_history) still "
            "holds what a server missed: it reads them from there when it is back; older ones, or ones Redis "
            "itself lost (a restart without persistence, a failover that dropped the last writes, which "
            "starts a new epoch), are a gap, logged; broadcast=False events wait in their list",
        )
    return Delivery(
        guarantee=AT_MOST_ONCE,
        sequence="bus",
        history=False,
        reconnect="broadcasts sent while a server is disconnected do not reach it (redis_event_history=0 "
        "keeps none to read back); broadcast=False events wait in their list",
    )


class RedisEventBus(EventBus):
    """Numbered broadcasts on pub/sub with their history in a stream; a BLPOP-consumed list
    for events that one server takes."""

    #: Seconds between PINGs on an idle subscription (see ``PING_SECONDS``).
    ping_seconds = PING_SECONDS

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = DEFAULT_PREFIX + "events:",
        timeout: float = DEFAULT_TIMEOUT,
        history: int = DEFAULT_EVENT_HISTORY,
    ):
        self.url = url
        self.prefix = normalize_prefix(prefix)
        if "{" in self.prefix or "}" in self.prefix:
            raise PluginError(
                f"redis_event_prefix {self.prefix!r} may not contain braces: the bus puts its keys in one "
                "Redis Cluster slot with a hash tag of its own"
            )
        if history < 0:
            raise PluginError(f"redis_event_history must be 0 or more, got {history}")
        self.timeout = timeout
        self.history = history
        self.delivery = with_history(history)
        self.sharded = url_kind(url) == "cluster"
        # One hash tag for the three keys the publish script touches (one slot on a Cluster).
        tag = "{" + self.prefix + "}"
        self.channel = tag + "broadcast"
        self.meta = tag + "meta"
        self.stream = tag + "history"
        self.queue = self.prefix + "queue"
        self._callbacks: list[EventCallback] = []
        self._client: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: asyncio.Event | None = None
        #: Whether the broadcast listener holds a live subscription right now (for ``ping``).
        self._listening = False
        self._closing = False
        #: The name of the listeners' connections in Redis's CLIENT LIST.
        self.client_name = f"toto-events-{os.getpid()}-{secrets.token_hex(3)}"
        self._follower = StreamFollower(self._hand_over, self.replay if history else None, "redis event bus")

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
        return cls(
            url=url,
            prefix=prefix,
            timeout=float(option_value(options, "redis_timeout", DEFAULT_TIMEOUT)),
            history=int(option_value(options, "redis_event_history", DEFAULT_EVENT_HISTORY)),
        )

    async def open(self) -> None:
        self._client = client = make_client(self.url, self.timeout)
        self._publish = client.register_script(_PUBLISH)
        self._replay = client.register_script(_REPLAY)
        self._subscribed = asyncio.Event()
        try:
            # Where this server starts: its first subscription reads from the history what was
            # published between now and then, so nothing sent after open() returns is missed.
            self._follower.last = await self.position()
        except StorageUnavailable:
            pass  # Redis is down: the server starts from what it hears first
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
    ) -> Position | None:
        if self._client is None:
            raise RuntimeError("RedisEventBus.open() must be awaited before publish()")
        message = encode_message(name, payload, metadata)
        async with unavailable_on_fault("Redis event bus"):
            if broadcast:
                args = [self.channel, message, secrets.token_hex(8), self.history, "1" if self.sharded else "0"]
                epoch, seq = await self._publish(keys=[self.meta, self.stream], args=args)
                return Position(_text(epoch), int(seq))
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(self.queue, message)
                pipe.pexpire(self.queue, QUEUE_TTL_MS)
                await pipe.execute()
        return None

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def position(self) -> Position | None:
        async with unavailable_on_fault("Redis event bus"):
            epoch, seq = await self._client.hmget(self.meta, ["epoch", "seq"])
        return Position(_text(epoch), int(seq)) if epoch is not None and seq is not None else None

    async def replay(self, since: Position, limit: int = 100) -> Replay:
        """The history after ``since``: one script reads the meta hash and the stream together."""
        if not self.history:
            return Replay([], complete=False)
        async with unavailable_on_fault("Redis event bus"):
            epoch, complete, entries = await self._replay(
                keys=[self.meta, self.stream], args=[since.epoch, since.seq, max(1, int(limit))]
            )
        if not epoch:
            return Replay([], complete=False)
        events = []
        for entry_id, fields in entries:
            seq = int(_text(entry_id).rsplit("-", 1)[1])
            values = dict(zip(fields[::2], fields[1::2]))
            try:
                name, payload, metadata = decode_message(values[b"m"])
            except (KeyError, ValueError):
                log.warning("redis event bus: skipped a malformed history entry %s", _text(entry_id))
                continue
            events.append(Event(name, payload, metadata, Position(_text(epoch), seq)))
        return Replay(events, complete=bool(complete))

    async def ping(self) -> bool:
        """Subscribed to the broadcast channel, and Redis answers a PING now (the listener
        alone would notice a cut only after ``ping_seconds``)."""
        if self._client is None or not self._listening:
            return False
        try:
            if self.sharded:
                await self._client.initialize()  # at once when it is (a client learns the slots on first use)
                node = self._client.get_node_from_key(self.channel)
                return bool(await self._client.execute_command("PING", target_nodes=node))
            return bool(await self._client.ping())
        except Exception:  # any fault means "not connected", which is the answer
            return False

    async def close(self) -> None:
        self._closing = True
        await stop_tasks(self._tasks)
        self._tasks = []
        if self._client is not None:
            await close_client(self._client)
            self._client = None

    def _hand_over(self, event: Event) -> None:
        deliver_to(self._callbacks, event, "redis event bus")

    async def _receive_broadcast(self, wire: bytes) -> None:
        try:
            event = decode_broadcast(wire)
        except ValueError:
            log.warning("redis event bus: dropped a malformed message on %s", self.channel)
            return
        await self._follower.receive(event)

    async def _listen_broadcasts(self) -> None:
        reconnects = Reconnects(log)
        data, subscribed = ("smessage", "ssubscribe") if self.sharded else ("message", "subscribe")
        while not self._closing:
            client = pubsub = None
            try:
                # No retries inside redis-py: this loop reconnects and resubscribes itself, and logs it.
                # On a Cluster it subscribes on the node that serves the channel's slot now.
                client = await client_of_slot(self.url, self.channel, self.timeout, client_name=self.client_name)
                pubsub = client.pubsub()
                if self.sharded:
                    await pubsub.ssubscribe(self.channel)
                else:
                    await pubsub.subscribe(self.channel)
                last_heard = last_ping = time.monotonic()
                while not self._closing:
                    message = await pubsub.get_message(timeout=min(POLL_SECONDS, self.ping_seconds))
                    now = time.monotonic()
                    if message is not None:
                        last_heard = now
                        kind = message["type"]
                        if kind == data:
                            await self._receive_broadcast(message["data"])
                        elif kind == subscribed:
                            reconnects.back("redis event bus: resubscribed to %s on %s", self.channel, redact(self.url))
                            self._listening = True
                            assert self._subscribed is not None
                            self._subscribed.set()
                            # What was published while this listener was away is in the history.
                            await self._follower.catch_up()
                        elif kind == "sunsubscribe":
                            raise ConnectionError("the channel's slot moved to another node")
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
                await reconnects.lost_it(
                    error, "redis event bus: lost the subscription to %s on %s", self.channel, redact(self.url)
                )
            finally:
                if pubsub is not None:
                    await _quietly(pubsub.aclose())
                if client is not None:
                    await _quietly(close_client(client))

    async def _listen_queue(self) -> None:
        client = make_client(
            self.url, self.timeout, blocking_seconds=POLL_SECONDS, retries=0, client_name=self.client_name
        )
        reconnects = Reconnects(log)
        try:
            while not self._closing:
                try:
                    popped = await client.blpop([self.queue], timeout=POLL_SECONDS)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a broken connection, or anything else: start over
                    await reconnects.lost_it(
                        error, "redis event bus: lost the queue %s on %s", self.queue, redact(self.url), warn_each=False
                    )
                    continue
                reconnects.back("redis event bus: listening to the queue %s again", self.queue)
                if popped is not None:
                    self._deliver_unicast(cast(bytes, popped[1]))
        finally:
            await _quietly(close_client(client))

    def _deliver_unicast(self, message: bytes) -> None:
        try:
            name, payload, metadata = decode_message(message)
        except ValueError:
            log.warning("redis event bus: dropped a malformed message on %s", self.queue)
            return
        self._hand_over(Event(name, payload, metadata, None))


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


async def _quietly(closing: Any) -> None:
    """Close a connection that may already be broken, without letting that fail a reconnect."""
    try:
        await asyncio.wait_for(closing, 1.0)
    except (Exception, asyncio.CancelledError) as error:  # it is being thrown away
        log.debug("redis event bus: closing a broken connection failed: %r", error)
