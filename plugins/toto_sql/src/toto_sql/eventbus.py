"""The ``postgres`` event bus: events between servers through PostgreSQL alone (LISTEN/NOTIFY).

A deployment whose only shared service is PostgreSQL needs nothing else. Three tables
under the ``sql_table_prefix`` ``P`` hold it:

    P event_stream   one row: the stream's epoch and the number of its last broadcast
    P events         the broadcasts, by number: name, payload, metadata (the history)
    P event_queue    events for exactly one server (``broadcast=False``), until one takes it

A broadcast is one statement: it takes the next number (an UPDATE of the stream row,
whose lock orders publishers, so numbers commit in order and without holes), stores the
event and sends ``NOTIFY P events`` with its position, and the event itself when it fits
in NOTIFY's 8000 bytes (base64). A larger one is read from the table by number. Every
server LISTENs on one connection of its own; what it missed while that connection was
down (NOTIFY keeps nothing for a listener that is gone) it reads from ``P events`` when it
is back, so the bus is at least once while the table still holds the events
(``sql_event_history`` of them).

An event for one server goes into ``P event_queue`` with ``NOTIFY P event_queue``; every
server then takes rows with ``DELETE ... FOR UPDATE SKIP LOCKED``, so each is taken by
exactly one, and a server that is back after a reconnect takes what waited.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

from toto.eventbus import (
    AT_LEAST_ONCE,
    Delivery,
    Event,
    EventBus,
    EventCallback,
    Position,
    Reconnects,
    Replay,
    StreamFollower,
    decode_event,
    decode_metadata,
    deliver_to,
    encode_event,
    encode_metadata,
    stop_tasks,
)
from toto.exceptions import PluginError, StorageUnavailable
from toto.options import option_value
from toto.plugins import install_command

from toto_sql.defaults import DEFAULT_EVENT_HISTORY, DEFAULT_PREFIX, DEFAULT_TIMEOUT
from toto_sql.lanes import postgres_unreachable
from toto_sql.schema import check_prefix
from toto_sql.urls import describe, resolve

log = logging.getLogger("toto.sql")

#: NOTIFY's payload limit is 8000 bytes; an event whose base64 text (with its position) is
#: longer is sent by number only and read from the table.
INLINE_LIMIT = 7900
#: Seconds between checks of an idle listening connection, and between looks at the queue.
PING_SECONDS = 3.0
#: Unicast events nobody took for this long are dropped.
QUEUE_TTL_SECONDS = 24 * 3600
#: Every this many broadcasts, the publisher deletes what is past the history.
TRIM_EVERY = 100

DELIVERY = Delivery(
    guarantee=AT_LEAST_ONCE,
    sequence="bus",
    history=True,
    reconnect="nothing while the events table still holds what a server missed (the last sql_event_history "
    "broadcasts): NOTIFY keeps nothing for a listener whose connection is down, so a server that reconnects "
    "reads the broadcasts after its last one from the table; older ones are a gap, logged; broadcast=False "
    "events wait in their table for a day",
)


class PostgresEventBus(EventBus):
    """LISTEN/NOTIFY with the payloads and the history in tables; asyncpg underneath."""

    delivery = DELIVERY
    ping_seconds = PING_SECONDS

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        history: int = DEFAULT_EVENT_HISTORY,
    ) -> None:
        _, resolved = resolve("postgres", url)
        if resolved.get_driver_name() != "asyncpg":
            raise PluginError(
                "event bus 'postgres' listens with asyncpg, which is not installed: "
                + install_command("toto-sql[postgres]")
            )
        if history < 1:
            raise PluginError(f"sql_event_history must be 1 or more, got {history}")
        self.where = describe(resolved)
        # asyncpg takes the plain libpq URL.
        self.dsn = resolved.set(drivername="postgresql").render_as_string(hide_password=False)
        self.prefix = check_prefix(prefix)
        self.timeout = float(timeout)
        self.history = int(history)
        self.stream_table = f"{prefix}event_stream"
        self.events_table = f"{prefix}events"
        self.queue_table = f"{prefix}event_queue"
        self.channel = self.events_table
        self.queue_channel = self.queue_table
        #: The listening connection's ``application_name`` (in ``pg_stat_activity``).
        self.application_name = f"toto-events-{os.getpid()}-{secrets.token_hex(3)}"
        self._callbacks: list[EventCallback] = []
        self._pool: Any = None
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._closing = False
        self._subscribed: asyncio.Event | None = None
        self._follower = StreamFollower(self._hand_over, self.replay, "postgres event bus")

    @classmethod
    def from_options(cls, options: Any) -> PostgresEventBus:
        url = option_value(options, "event_url", None)
        if not url:
            database_url = option_value(options, "database_url", None)
            if not database_url or not str(database_url).startswith(("postgres", "postgresql")):
                raise PluginError(
                    "event bus 'postgres' needs a PostgreSQL URL: --event_url=postgresql://user@host:5432/db "
                    "(or a PostgreSQL --database_url)"
                )
            url = database_url
        return cls(
            str(url),
            prefix=str(option_value(options, "sql_table_prefix", DEFAULT_PREFIX)),
            timeout=float(option_value(options, "sql_timeout", DEFAULT_TIMEOUT)),
            history=int(option_value(options, "sql_event_history", DEFAULT_EVENT_HISTORY)),
        )

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=4, timeout=self.timeout, command_timeout=self.timeout
        )
        self._subscribed = asyncio.Event()
        try:
            await self._make_tables()
            # Where this server starts: what is published from here on reaches it, also what
            # comes before its LISTEN is in place (it reads that from the table).
            self._follower.last = await self.position()
        except StorageUnavailable:
            log.warning("postgres event bus: %s does not answer yet; events wait until it does", self.where)
        self._task = asyncio.create_task(self._listen(), name="toto-postgres-events")
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.timeout * 2)
        except asyncio.TimeoutError:
            pass  # the listener says so in the log, and keeps trying

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _make_tables(self) -> None:
        """The bus's tables, made once by whichever server comes first (an advisory lock
        keeps two servers from racing on CREATE TABLE)."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"toto-sql events {self.prefix}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.stream_table} "
                "(id INTEGER PRIMARY KEY, epoch TEXT NOT NULL, seq BIGINT NOT NULL)"
            )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.events_table} "
                "(seq BIGINT PRIMARY KEY, name TEXT NOT NULL, payload BYTEA NOT NULL, metadata TEXT)"
            )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.queue_table} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
                "payload BYTEA NOT NULL, metadata TEXT, created TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            await conn.execute(
                f"INSERT INTO {self.stream_table} (id, epoch, seq) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING",
                secrets.token_hex(8),
            )

    def _connection(self) -> Any:
        """A pooled connection, faults as ``StorageUnavailable`` (1013)."""
        return _Unavailable(self._pool.acquire(timeout=self.timeout), self.where)

    # -- publishing -------------------------------------------------------------------------
    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> Position | None:
        if self._pool is None:
            raise RuntimeError("PostgresEventBus.open() must be awaited before publish()")
        extra = encode_metadata(metadata).decode("utf-8") if metadata else None
        async with self._connection() as conn:
            if not broadcast:
                await conn.execute(
                    f"WITH queued AS (INSERT INTO {self.queue_table} (name, payload, metadata) VALUES ($1, $2, $3)) "
                    "SELECT pg_notify($4, '')",
                    name,
                    payload,
                    extra,
                    self.queue_channel,
                )
                return None
            inline = base64.b64encode(encode_event(name, payload, metadata)).decode("ascii")
            tail = ":" + inline if len(inline) <= INLINE_LIMIT else ""
            # One statement, one transaction: the stream row's lock is held until it commits,
            # so numbers commit (and NOTIFY delivers) in order.
            row = await conn.fetchrow(
                f"WITH next AS (UPDATE {self.stream_table} SET seq = seq + 1 WHERE id = 1 RETURNING epoch, seq), "
                f"kept AS (INSERT INTO {self.events_table} (seq, name, payload, metadata) "
                "SELECT seq, $1, $2, $3 FROM next) "
                "SELECT epoch, seq, pg_notify($4, epoch || ':' || seq || $5) FROM next",
                name,
                payload,
                extra,
                self.channel,
                tail,
            )
            if row is None:
                raise StorageUnavailable(f"postgres event bus: the {self.stream_table} row is missing; restart")
            position = Position(row["epoch"], int(row["seq"]))
            if position.seq % TRIM_EVERY == 0:
                await conn.execute(f"DELETE FROM {self.events_table} WHERE seq <= $1", position.seq - self.history)
                await conn.execute(
                    f"DELETE FROM {self.queue_table} WHERE created < now() - make_interval(secs => $1)",
                    float(QUEUE_TTL_SECONDS),
                )
        return position

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def ping(self) -> bool:
        if self._pool is None or not self._listening:
            return False
        try:
            async with self._connection() as conn:
                return bool(await conn.fetchval("SELECT true"))
        except StorageUnavailable:
            return False

    # -- history ----------------------------------------------------------------------------
    async def position(self) -> Position | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(f"SELECT epoch, seq FROM {self.stream_table} WHERE id = 1")
        return Position(row["epoch"], int(row["seq"])) if row is not None else None

    async def replay(self, since: Position, limit: int = 100) -> Replay:
        async with self._connection() as conn:
            top = await conn.fetchrow(f"SELECT epoch, seq FROM {self.stream_table} WHERE id = 1")
            if top is None:
                return Replay([], complete=False)
            same_epoch = top["epoch"] == since.epoch
            after = since.seq if same_epoch else 0
            rows = await conn.fetch(
                f"SELECT seq, name, payload, metadata FROM {self.events_table} WHERE seq > $1 ORDER BY seq LIMIT $2",
                after,
                max(1, int(limit)),
            )
        complete = same_epoch and (int(rows[0]["seq"]) == since.seq + 1 if rows else since.seq >= int(top["seq"]))
        events = []
        for row in rows:
            try:
                metadata = decode_metadata(row["metadata"].encode("utf-8")) if row["metadata"] else None
            except ValueError:
                metadata = None
            events.append(Event(row["name"], bytes(row["payload"]), metadata, Position(top["epoch"], int(row["seq"]))))
        return Replay(events, complete=complete)

    # -- listening --------------------------------------------------------------------------
    def _hand_over(self, event: Event) -> None:
        deliver_to(self._callbacks, event, "postgres event bus")

    async def _listen(self) -> None:
        import asyncpg

        reconnects = Reconnects(log)
        while not self._closing:
            conn = None
            notices: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
            try:
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                    server_settings={"application_name": self.application_name},
                )
                conn.add_termination_listener(_into(notices))
                await conn.add_listener(self.channel, _into(notices))
                await conn.add_listener(self.queue_channel, _into(notices))
                if self._follower.last is None:
                    await self._make_tables()
                    self._follower.last = await self.position()
                self._listening = True
                assert self._subscribed is not None
                self._subscribed.set()
                reconnects.back("postgres event bus: listening again on %s", self.where)
                # What came while this server was not listening is in the tables.
                await self._follower.catch_up()
                await self._take_queued()
                while not self._closing:
                    try:
                        notice = await asyncio.wait_for(notices.get(), self.ping_seconds)
                    except asyncio.TimeoutError:
                        # A quiet connection may be a dead one: ask it, and look at the queue.
                        await conn.fetchval("SELECT 1", timeout=self.timeout)
                        await self._take_queued()
                        continue
                    if notice is None or conn.is_closed():
                        raise ConnectionError("the listening connection was closed")
                    channel, text = notice
                    if channel == self.queue_channel:
                        await self._take_queued()
                    else:
                        await self._receive(text)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a broken connection, or anything else: start over
                self._listening = False
                if self._closing:
                    break
                await reconnects.lost_it(error, "postgres event bus: lost the listening connection to %s", self.where)
            finally:
                if conn is not None:
                    conn.terminate()

    async def _receive(self, text: str) -> None:
        epoch, _, rest = text.partition(":")
        seq_text, _, inline = rest.partition(":")
        try:
            position = Position(epoch, int(seq_text))
            if not inline:
                # Too large for NOTIFY: read it (and anything before it this server lacks) from the table.
                if position.follows(self._follower.last):
                    await self._follower.catch_up()
                return
            name, payload, metadata = decode_event(base64.b64decode(inline, validate=True))
        except ValueError:
            log.warning("postgres event bus: dropped a malformed notification on %s", self.channel)
            return
        await self._follower.receive(Event(name, payload, metadata, position))

    async def _take_queued(self) -> None:
        """Take the queued events for one server until none is left (each row goes to exactly one server)."""
        while not self._closing:
            async with self._connection() as conn:
                row = await conn.fetchrow(
                    f"DELETE FROM {self.queue_table} WHERE id = (SELECT id FROM {self.queue_table} ORDER BY id "
                    "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING name, payload, metadata"
                )
            if row is None:
                return
            try:
                metadata = decode_metadata(row["metadata"].encode("utf-8")) if row["metadata"] else None
            except ValueError:
                metadata = None
            self._hand_over(Event(row["name"], bytes(row["payload"]), metadata, None))


def _into(notices: asyncio.Queue[tuple[str, str] | None]) -> Any:
    """asyncpg's callback for a notification (connection, pid, channel, text) or for the end of
    the connection (connection alone, queued as None), putting it on ``notices``."""

    def put(_connection: Any, *notification: Any) -> None:
        notices.put_nowait((notification[1], notification[2]) if notification else None)

    return put


class _Unavailable:
    """``async with`` a pooled connection, turning "PostgreSQL cannot be used now" into 1013."""

    def __init__(self, acquiring: Any, where: str) -> None:
        self._acquiring = acquiring
        self._where = where

    async def __aenter__(self) -> Any:
        try:
            return await self._acquiring.__aenter__()
        except Exception as error:
            raise self._translate(error) from error

    async def __aexit__(self, kind: Any, error: BaseException | None, trace: Any) -> bool:
        try:
            await self._acquiring.__aexit__(kind, error, trace)
        except Exception as release_error:  # a broken connection going back to the pool
            log.debug("postgres event bus: releasing a connection failed: %r", release_error)
        if error is not None and postgres_unreachable(error):
            raise self._translate(error) from error
        return False

    def _translate(self, error: BaseException) -> BaseException:
        if not postgres_unreachable(error):
            return error
        return StorageUnavailable(
            f"PostgreSQL event bus at {self._where} is unavailable ({type(error).__name__}); try again shortly."
        )
