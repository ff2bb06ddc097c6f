"""Held connections on which the storage runs its statements straight on the driver.

SQLAlchemy makes the connections (URL, connect arguments, dialect set-up, SQLite's
pragmas), compiles every statement for the dialect and names every error; what it
costs per call — a pool checkout through a greenlet, a cursor adapter, result
processing — was most of a request's time against a local database. So the storage
keeps a few connections checked out for good ("lanes") and runs the compiled SQL on
each one's driver connection: one call on asyncpg or asyncmy (one round trip), one
hop to aiosqlite's thread. A lane that meets a fault is thrown away and a new one is
made on the next call, which is how the storage heals when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("toto.sql")

#: Seconds a discarded connection gets to close beyond the storage's timeout.
CLOSE_GRACE = 3.0


@dataclass
class Lane:
    """One held connection: SQLAlchemy's, its DBAPI adapter and the driver's own."""

    conn: AsyncConnection
    adapted: Any
    driver: Any
    born: float = field(default_factory=time.monotonic)


class Lanes:
    """At most ``size`` held connections of ``engine``; a caller waits up to ``timeout`` for a free one."""

    def __init__(self, engine: AsyncEngine, size: int, timeout: float, recycle: float = 3600.0) -> None:
        self.engine = engine
        self.size = size
        self.timeout = timeout
        self.recycle = recycle
        self._idle: list[Lane] = []
        self._free = asyncio.Semaphore(size)
        self._discarding: set[asyncio.Task[None]] = set()

    async def acquire(self) -> Lane:
        if self._free.locked():
            try:
                await asyncio.wait_for(self._free.acquire(), self.timeout)
            except asyncio.TimeoutError:
                raise sa_exc.TimeoutError(f"no free connection within {self.timeout} s") from None
        else:
            await self._free.acquire()
        try:
            while self._idle:
                lane = self._idle.pop()
                if time.monotonic() - lane.born < self.recycle:
                    return lane
                self.discard(lane)
            try:
                conn = await self.engine.connect()
            except RuntimeError as error:
                # asyncmy on a connection cut while it is being set up: "Transport does not expose socket instance"
                raise ConnectionError(f"connecting failed: {error}") from error
            try:
                raw = await conn.get_raw_connection()
            except BaseException:
                await conn.close()
                raise
            return Lane(conn, raw.dbapi_connection, raw.driver_connection)
        except BaseException:
            self._free.release()
            raise

    def release(self, lane: Lane, broken: bool = False) -> None:
        if broken:
            self.discard(lane)
        else:
            self._idle.append(lane)
        self._free.release()

    def discard(self, lane: Lane) -> None:
        """Close a lane in the background: a broken connection may take its time to close."""
        task = asyncio.ensure_future(self._close(lane, invalidate=True))
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _close(self, lane: Lane, invalidate: bool) -> None:
        try:
            # Longer than the drivers' own bound on a graceful close (asyncpg: 2 s, run by SQLAlchemy
            # in a shielded task): cut short, that task would fail later with no one to hear it.
            bound = self.timeout + CLOSE_GRACE
            async with asyncio.timeout(bound) if hasattr(asyncio, "timeout") else contextlib.nullcontext():
                if invalidate:
                    await lane.conn.invalidate()
                await lane.conn.close()
        except (Exception, asyncio.CancelledError) as error:  # it is being thrown away
            log.debug("sql storage: closing a connection failed: %r", error)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for lane in idle:
            await self._close(lane, invalidate=False)
        if self._discarding:
            await asyncio.gather(*self._discarding, return_exceptions=True)


async def _settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def fetch(driver_name: str, lane: Lane, sql: str, args: Any) -> list[Any]:
    """The rows of one statement, as sequences in column order."""
    driver = lane.driver
    if driver_name == "asyncpg":
        return list(await driver.fetch(sql, *args))
    if driver_name == "aiosqlite":
        return list(await driver.execute_fetchall(sql, args))
    cursor = await _settle(driver.cursor())  # asyncmy, psycopg
    try:
        await cursor.execute(sql, args)
        return list(await _settle(cursor.fetchall())) if cursor.description else []
    finally:
        await _settle(cursor.close())


async def change(driver_name: str, lane: Lane, sql: str, args: Any) -> int:
    """Run one statement that changes rows; return how many rows it matched."""
    driver = lane.driver
    if driver_name == "asyncpg":
        status: str = await driver.execute(sql, *args)  # "UPDATE 3", "INSERT 0 1"
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0
    if driver_name == "aiosqlite":
        cursor = await driver.execute(sql, args)
        try:
            return int(cursor.rowcount)
        finally:
            await cursor.close()
    cursor = await _settle(driver.cursor())
    try:
        await cursor.execute(sql, args)
        return int(cursor.rowcount)
    finally:
        await _settle(cursor.close())


def wrap_error(engine: AsyncEngine, lane: Lane, error: Exception, sql: str, args: list[Any]) -> Exception:
    """The error as SQLAlchemy would have raised it (``IntegrityError``, ``OperationalError``...,
    with ``connection_invalidated`` for a lost connection); other errors (OSError, timeouts) as they are."""
    dialect = engine.dialect
    dbapi = dialect.loaded_dbapi
    translated = error if isinstance(error, dbapi.Error) else driver_error(dbapi, error)
    if not isinstance(translated, dbapi.Error):
        return translated
    lost = bool(dialect.is_disconnect(translated, lane.adapted, None))
    return sa_exc.DBAPIError.instance(sql, args, translated, dbapi.Error, connection_invalidated=lost)


def driver_error(dbapi: Any, error: Exception) -> Exception:
    """A driver's own error as the DBAPI (PEP 249) exception of SQLAlchemy's adapter module.

    aiosqlite, asyncmy and psycopg raise PEP 249 exceptions already; asyncpg has its own,
    named here by SQLSTATE class (``23`` integrity, ``22`` data, ``08``/``53``/``57``/``58``
    the server or the connection). Errors of no driver (OSError, timeouts) stay as they are.
    """
    try:
        import asyncpg
    except ImportError:
        return error
    if isinstance(error, asyncpg.InterfaceError):
        kind = dbapi.InterfaceError
    elif isinstance(error, asyncpg.exceptions.InternalClientError):
        kind = dbapi.InternalError
    elif isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        kind = _POSTGRES_CLASSES.get(state[:2], "DatabaseError")
        kind = getattr(dbapi, kind)
    else:
        return error
    translated: Exception = kind(str(error))
    translated.__cause__ = error
    return translated


#: SQLSTATE class -> PEP 249 exception (PostgreSQL's "Appendix A. Error Codes").
_POSTGRES_CLASSES = {
    "08": "OperationalError",  # connection exception
    "22": "DataError",
    "23": "IntegrityError",
    "25": "InternalError",  # invalid transaction state
    "40": "OperationalError",  # transaction rollback (serialization failure, deadlock)
    "42": "ProgrammingError",  # syntax error or access rule violation
    "53": "OperationalError",  # insufficient resources
    "54": "OperationalError",  # program limit exceeded
    "55": "OperationalError",  # object not in prerequisite state
    "57": "OperationalError",  # operator intervention (admin shutdown, cannot connect now)
    "58": "OperationalError",  # system error (I/O)
    "XX": "InternalError",
}


def postgres_unreachable(error: BaseException) -> bool:
    """Whether an error of asyncpg (used directly, as the event bus does) means "PostgreSQL
    cannot be used right now": the network, the connection, or a server that is shutting
    down, starting, out of resources or read-only (a standby), by SQLSTATE class as above."""
    import asyncpg

    if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError, asyncpg.InterfaceError)):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return _POSTGRES_CLASSES.get(state[:2]) == "OperationalError" or state == "25006"
    return False
