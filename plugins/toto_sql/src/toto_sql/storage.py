"""``SqlStorage``: accounts and sessions in SQLite, PostgreSQL or MySQL/MariaDB through SQLAlchemy's asyncio engine.

Every storage call is one SQL statement in autocommit mode (one round trip, no
transaction to begin or end), except ``update_account``, which merges fields with a
compare-and-swap so that it needs no transaction either. Faults of the database
(unreachable, timed out, read-only, full) become ``StorageUnavailable`` (1013/503)
and one log line per outage; a connection that met a fault is replaced on the next
call, so the storage heals by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import BigInteger, bindparam, case, delete, event, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from toto.exceptions import ERROR_MALFORMED_REQUEST, PluginError, StorageUnavailable, TotoException
from toto.options import option_value
from toto.storage import AccountRecord, DuplicateAccount, SessionRecord, Storage
from toto.storage.batching import ReadBatcher

from toto_sql.defaults import DEFAULT_PREFIX, DEFAULT_TIMEOUT
from toto_sql.lanes import Lane, Lanes, change, fetch, postgres_unreachable, wrap_error
from toto_sql.schema import COMPONENT, MAX_GUARD_KEY, SCHEMA_VERSION, Tables, make_tables
from toto_sql.urls import Family, describe, resolve

log = logging.getLogger("toto.sql")

T = TypeVar("T")

#: Rows one purge statement deletes at most, and the pause between two batches.
PURGE_BATCH = 500
PURGE_PAUSE = 0.05
#: Connections the storage holds for its own statements (SQLite: one thread each).
LANES = 10
LANES_SQLITE = 4
#: Session ids one batched read asks for at most (SQLite allows 999 parameters in old builds).
READ_BATCH = 100
#: Attempts of a field merge that keeps meeting concurrent updates.
MERGE_ATTEMPTS = 20


def _encode_fields(fields: dict[str, Any]) -> str:
    # The core has checked that the fields are JSON data (toto.storage.checks).
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class SqlStorage(Storage):
    """Toto storage on SQLAlchemy 2's asyncio engine; ``db`` is an ``AsyncEngine`` for the app's own tables.

    ``url`` is a SQLAlchemy URL with its asyncio driver (``toto_sql.urls.resolve``
    makes one from what users type). ``prefix`` starts the name of every table, so
    several apps (or test runs) can share one database. ``timeout`` bounds connecting
    and each statement, so a request meets an unreachable database with 1013 in time.
    """

    def __init__(
        self,
        url: URL | str,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        family: Family | None = None,
        purge_batch: int = PURGE_BATCH,
    ) -> None:
        if family is None:
            name = str(url).split(":", 1)[0].split("+", 1)[0]
            family, url = resolve({"postgresql": "postgres", "mariadb": "mysql"}.get(name, name), str(url))
        self.family = family
        self.url = url if isinstance(url, URL) else resolve(family.name, url)[1]
        self.prefix = prefix
        self.timeout = float(timeout)
        self.purge_batch = int(purge_batch)
        self.tables: Tables = make_tables(prefix)
        self.sql = make_statements(self.tables, family.backend, self.purge_batch)
        self._compiled: dict[int, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._driver = self.url.get_driver_name()
        self._lanes: Lanes | None = None
        self.db: AsyncEngine | None = None
        self._engine: AsyncEngine | None = None
        self._sqlite = family.name == "sqlite"
        # SQLite has one writer at a time: queue this process's writes here rather than
        # in SQLite's busy loop, which sleeps; other processes still meet the busy timeout.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self._sqlite else None
        self._schema_lock = asyncio.Lock()
        self._schema_ready = False
        self._fault: str | None = None
        #: While ``open`` runs, a configuration error is its to report (one line, the server stops).
        self._opening = False
        self._load_many: dict[int, Any] = {}
        self._session_reads: ReadBatcher[str, Any] = ReadBatcher(self._load_sessions)

    @classmethod
    def from_options(cls, options: Any) -> SqlStorage:
        name = option_value(options, "database", "sqlite")
        url_text = option_value(options, "database_url", None)
        family, url = resolve(name, url_text)
        storage = cls(
            url,
            prefix=str(option_value(options, "sql_table_prefix", DEFAULT_PREFIX)),
            timeout=float(option_value(options, "sql_timeout", DEFAULT_TIMEOUT)),
            family=family,
        )
        if url_text is None:
            log.info(
                "no --database_url given: using the embedded SQLite database %s (set --database and --database_url "
                "to use another)",
                storage.sqlite_path() or url,
            )
        return storage

    # -- engines ------------------------------------------------------------------------
    def sqlite_path(self) -> str | None:
        """The absolute path of a file SQLite database, else None."""
        database = self.url.database
        if not self._sqlite or not database or database == ":memory:" or database.startswith("file:"):
            return None
        return str(Path(database).resolve())

    def _engine_arguments(self, busy_timeout: float) -> dict[str, Any]:
        timeout = self.timeout
        driver = self.url.get_driver_name()
        if self._sqlite:
            arguments: dict[str, Any] = {"connect_args": {"timeout": busy_timeout}}
            if not self.url.database or self.url.database == ":memory:":
                # Each connection to :memory: is a new database: share one.
                arguments["poolclass"] = StaticPool
            return arguments
        arguments = {"pool_size": 10, "max_overflow": 20, "pool_timeout": timeout}
        if driver == "asyncpg":
            arguments["connect_args"] = {"timeout": timeout, "command_timeout": timeout}
        elif driver == "asyncmy":
            arguments["connect_args"] = {"connect_timeout": timeout, "read_timeout": timeout}
        elif driver == "psycopg":
            arguments["connect_args"] = {"connect_timeout": max(1, round(timeout))}
        return arguments

    def _make_engine(self, busy_timeout: float, **extra: Any) -> AsyncEngine:
        engine = create_async_engine(self.url, **self._engine_arguments(busy_timeout), **extra)
        if self._sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        path = self.sqlite_path()
        if path is not None and not Path(path).parent.is_dir():
            raise PluginError(f"SQLite database {path}: the directory {Path(path).parent} does not exist")
        # Our statements run in autocommit: one round trip each, nothing to roll back on return.
        # A write first waits for this process's turn, then for SQLite's lock: half the timeout each.
        # The lanes hold their connections for good, so nothing is reset on a return to the pool.
        self._engine = self._make_engine(self.timeout / 2, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
        self.db = self._make_engine(self.timeout)
        in_memory = self._sqlite and (not self.url.database or self.url.database == ":memory:")
        self._lanes = Lanes(self._engine, 1 if in_memory else LANES_SQLITE if self._sqlite else LANES, self.timeout)
        self._opening = True
        try:
            await self._ensure_schema()
        except BaseException as error:
            wrong = configuration_error(error)
            if wrong is None and isinstance(error, StorageUnavailable):
                # Serve anyway: requests answer 1013 until the database answers, then the tables are made.
                log.warning("sql storage: %s does not answer yet; requests answer 1013 until it does", self.where())
                return
            # A database or role that does not exist, refused credentials, tables newer than this
            # release: waiting will not help, so the server stops (its connections first).
            await self.close()
            if wrong is not None:
                raise PluginError(f"sql storage: {self.where()}: {wrong}; check database_url") from None
            raise
        finally:
            self._opening = False

    async def close(self) -> None:
        if self._lanes is not None:
            await self._lanes.close()
        for engine in (self._engine, self.db):
            if engine is not None:
                await engine.dispose()

    def where(self) -> str:
        return self.sqlite_path() or describe(self.url)

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            await self._call(self._create_schema, write=True, schema=False)
            self._schema_ready = True

    async def _create_schema(self, lane: Lane) -> None:
        conn = lane.conn
        tables = self.tables
        for attempt in range(5):
            try:
                await conn.run_sync(tables.metadata.create_all)
                break
            except sa_exc.DBAPIError as error:
                # Another process (of a --processes group, say) created them at the same moment: look again.
                raced = isinstance(error, (sa_exc.IntegrityError, sa_exc.ProgrammingError))
                if attempt == 4 or not (raced or "already exists" in str(error.orig)):
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        version_table = tables.schema_version
        found = (
            await conn.execute(select(version_table.c.version).where(version_table.c.component == COMPONENT))
        ).scalar()
        if found is None:
            with contextlib.suppress(sa_exc.IntegrityError):
                await conn.execute(insert(version_table).values(component=COMPONENT, version=SCHEMA_VERSION))
            log.info(
                "sql storage: created the %s* tables (schema version %d) in %s",
                self.prefix,
                SCHEMA_VERSION,
                self.where(),
            )
        elif found > SCHEMA_VERSION:
            raise PluginError(
                f"the {self.prefix}* tables in {self.where()} have schema version {found}, newer than this "
                f"toto-sql knows ({SCHEMA_VERSION}): upgrade toto-sql"
            )
        elif found < SCHEMA_VERSION:
            await self._migrate(conn, found)
        await conn.commit()  # end SQLAlchemy's own bookkeeping of the held connection (autocommit: no round trip)

    async def _migrate(self, conn: Any, found: int) -> None:
        """Bring tables of schema version ``found`` up to ``SCHEMA_VERSION`` (new tables
        were made by ``create_all`` already). Several processes may do it at once."""
        tables = self.tables
        if found < 2:
            try:
                await conn.exec_driver_sql(
                    f"ALTER TABLE {tables.sessions.name} ADD COLUMN version BIGINT NOT NULL DEFAULT 0"
                )
            except sa_exc.DBAPIError as error:
                if "duplicate" not in str(error.orig).lower() and "exists" not in str(error.orig).lower():
                    raise
        version_table = tables.schema_version
        await conn.execute(
            update(version_table).where(version_table.c.component == COMPONENT).values(version=SCHEMA_VERSION)
        )
        log.info(
            "sql storage: migrated the %s* tables from schema version %d to %d", self.prefix, found, SCHEMA_VERSION
        )

    # -- running statements ---------------------------------------------------------------
    async def _call(
        self,
        body: Callable[[Lane], Awaitable[T]],
        write: bool = False,
        schema: bool = True,
    ) -> T:
        """Run ``body`` on a held autocommit connection, mapping database faults to 1013.

        A statement that fails at once on a connection that turned out dead (the
        database restarted while the connection idled) is tried once more on a new one.
        """
        if schema and not self._schema_ready:
            await self._ensure_schema()
        lanes = self._lanes
        if lanes is None:
            raise RuntimeError("SqlStorage.open() must be awaited before use")
        started = time.monotonic()
        retried = False
        while True:
            try:
                async with self._writing() if write else contextlib.nullcontext():
                    lane = await lanes.acquire()
                    broken = True
                    try:
                        result = await body(lane)
                        broken = False
                    except sa_exc.DBAPIError as error:
                        # A statement's own error (a duplicate key) leaves the connection as good as it was;
                        # any other (lost, timed out, a read-only SQLite file) gets a new connection next time.
                        broken = self._fault_of(error) is not None
                        raise
                    finally:
                        lanes.release(lane, broken)
            except (TotoException, DuplicateAccount, PluginError):
                raise
            except sa_exc.IntegrityError:
                raise
            except sa_exc.DataError as error:
                raise TotoException(ERROR_MALFORMED_REQUEST, "A value is too large for the database.") from error
            except Exception as error:
                fault = self._fault_of(error)
                if fault is None:
                    raise
                invalidated = isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
                if invalidated and not retried and time.monotonic() - started < self.timeout / 2:
                    retried = True
                    continue
                self._report(fault, error)
                raise StorageUnavailable(f"The database is unavailable ({fault}); try again shortly.") from error
            if self._fault is not None:
                log.warning("sql storage: %s answers again", self.where())
                self._fault = None
            return result

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """SQLite's turn to write in this process, waited for no longer than ``timeout``:
        a file that another process keeps locked must not queue requests without end."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if lock.locked():
            try:
                await asyncio.wait_for(lock.acquire(), self.timeout / 2)
            except asyncio.TimeoutError:
                raise sa_exc.TimeoutError("waited too long for this process's turn to write") from None
        else:
            await lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _fault_of(self, error: BaseException) -> str | None:
        """What kind of database fault ``error`` is, or None when it is not one (a bug)."""
        if isinstance(error, sa_exc.DBAPIError):
            if self._sqlite:
                text = str(error.orig).lower()
                if (
                    "readonly" in text
                    or "read-only" in text
                    or ("unable to open" in text and not self._sqlite_writable())
                ):
                    return "the SQLite database is read-only (WAL mode needs to write the file and its folder)"
                if "full" in text:
                    return "the disk is full"
                if "locked" in text or "busy" in text:
                    return "the SQLite database is locked by another process"
                if isinstance(error, sa_exc.OperationalError):
                    return f"SQLite error: {error.orig}"
                return None
            if error.connection_invalidated or isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
                return "unreachable"
            # SQLAlchemy's asyncpg adapter raises a bare DBAPIError for a server that refuses
            # connections while it shuts down or starts (SQLSTATE 57P03): asyncpg's own error,
            # the adapter's cause, says what it is.
            cause = getattr(error.orig, "__cause__", None)
            if self.family.backend == "postgresql" and cause is not None and postgres_unreachable(cause):
                return "unreachable"
            return None
        if isinstance(error, sa_exc.TimeoutError):
            return f"busy: {error}"
        if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError)):
            return "unreachable"
        return None

    def _sqlite_writable(self) -> bool:
        path = self.sqlite_path()
        if path is None:
            return True
        folder_ok = os.access(os.path.dirname(path), os.W_OK)
        return folder_ok and (not os.path.exists(path) or os.access(path, os.W_OK))

    def _report(self, fault: str, error: BaseException) -> None:
        if self._opening and configuration_error(error) is not None:
            return
        if fault != self._fault:
            cause = getattr(error, "orig", None) or error
            log.error(
                "sql storage: %s: %s (%s: %s); requests answer 1013 until it recovers",
                self.where(),
                fault,
                type(cause).__name__,
                str(cause).splitlines()[0] if str(cause) else "",
            )
            self._fault = fault

    # -- statements -------------------------------------------------------------------------
    async def _run(self, statement: Any, params: dict[str, Any], *, write: bool = False, rowcount: bool = False) -> Any:
        """Run one statement of ``self.sql`` on a lane's driver connection (see ``toto_sql.lanes``):
        its rows (sequences in column order), or with ``rowcount`` how many rows it matched."""

        async def body(lane: Lane) -> Any:
            return await self._execute(lane, statement, params, rowcount)

        return await self._call(body, write=write)

    async def _execute(self, lane: Lane, statement: Any, params: dict[str, Any], rowcount: bool = False) -> Any:
        """One statement on ``lane``: its rows, or with ``rowcount`` how many rows it matched."""
        sql, order, defaults = self._compile(statement)
        if order is None:  # a driver with named parameters (psycopg)
            args: Any = {**defaults, **params}
        else:
            args = [params[name] if name in params else defaults[name] for name in order]
        run = change if rowcount else fetch
        try:
            return await run(self._driver, lane, sql, args)
        except Exception as error:
            assert self._engine is not None
            wrapped = wrap_error(self._engine, lane, error, sql, args)
            if wrapped is error:
                raise
            raise wrapped from error

    def _compile(self, statement: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        found = self._compiled.get(id(statement))
        if found is None:
            assert self._engine is not None
            compiled = statement.compile(dialect=self._engine.dialect)
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            found = (compiled.string, order, dict(compiled.params))
            self._compiled[id(statement)] = found
        return found

    # -- the Storage interface --------------------------------------------------------------
    async def ping(self) -> bool:
        async def body(lane: Lane) -> bool:
            await lane.conn.exec_driver_sql("SELECT 1")
            await lane.conn.commit()
            return True

        try:
            return await self._call(body, schema=False)
        except StorageUnavailable:
            return False

    async def create_account(self, user_id: str, password_hash: str, fields: dict[str, Any]) -> None:
        params = {"user_id": user_id, "password_hash": password_hash, "fields": _encode_fields(fields)}
        try:
            await self._run(self.sql.create_account, params, write=True)
        except sa_exc.IntegrityError:
            raise DuplicateAccount(user_id) from None

    async def get_account(self, user_id: str) -> AccountRecord | None:
        rows = await self._run(self.sql.get_account, {"match_user_id": user_id})
        if not rows:
            return None
        password_hash, fields = rows[0]
        return AccountRecord(user_id, password_hash, json.loads(fields))

    async def update_account(
        self, user_id: str, password_hash: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        if not fields:
            if password_hash is not None:
                params = {"match_user_id": user_id, "password_hash": password_hash}
                await self._run(self.sql.set_password, params, write=True)
            return
        for _ in range(MERGE_ATTEMPTS):
            rows = await self._run(self.sql.get_account, {"match_user_id": user_id})
            if not rows:
                return
            old_hash, old_fields = rows[0]
            params = {
                "match_user_id": user_id,
                "old_fields": old_fields,
                "fields": _encode_fields({**json.loads(old_fields), **fields}),
                "password_hash": old_hash if password_hash is None else password_hash,
            }
            # Compare-and-swap: a concurrent merge in between makes this match no row; read again.
            if await self._run(self.sql.swap_fields, params, write=True, rowcount=True) == 1:
                return
            await asyncio.sleep(0)
        raise StorageUnavailable("The account is being changed by many requests at once; try again shortly.")

    async def store_session(self, record: SessionRecord) -> None:
        params = {
            "session_id": record.session_id,
            "user_id": record.user_id,
            "expires": float(record.expires),
            "state": record.state,
            "signing_key": record.key,
            "version": int(record.version),
        }
        await self._run(self.sql.store_session, params, write=True)

    async def load_session(self, session_id: str) -> SessionRecord | None:
        # Joins the other reads started in this event-loop turn: one statement for all of them.
        row = await self._session_reads.read(session_id)
        if row is None:
            return None
        user_id, expires, state, key, version = row
        return SessionRecord(session_id, user_id, float(expires), bytes(state or b""), key, int(version or 0))

    async def _load_sessions(self, session_ids: Sequence[str]) -> list[Any]:
        """The live (unexpired) row of each of ``session_ids`` (None for none), in their order:
        one statement per ``READ_BATCH`` ids. A fault (1013) reaches every read of the batch."""
        found: dict[str, Any] = {}
        now = time.time()
        for start in range(0, len(session_ids), READ_BATCH):
            chunk = session_ids[start : start + READ_BATCH]
            if len(chunk) == 1:
                rows = await self._run(self.sql.load_session, {"match_session_id": chunk[0], "now": now})
                if rows:
                    found[chunk[0]] = rows[0]
                continue
            statement = self._load_many.get(len(chunk))
            if statement is None:
                statement = self._load_many[len(chunk)] = load_sessions_statement(self.tables, len(chunk))
            params: dict[str, Any] = {f"s{i}": session_id for i, session_id in enumerate(chunk)}
            params["now"] = now
            for session_id, *row in await self._run(statement, params):
                found[session_id] = row
        return [found.get(session_id) for session_id in session_ids]

    async def touch_session(self, session_id: str, expires: float) -> None:
        await self._run(self.sql.touch_session, {"match_session_id": session_id, "expires": float(expires)}, write=True)

    async def save_state(self, session_id: str, state: bytes, version: int | None = None) -> int | None:
        params: dict[str, Any] = {"match_session_id": session_id, "state": state, "now": time.time()}
        if version is not None:
            params["match_version"] = int(version)
            written = await self._run(self.sql.save_state_at, params, write=True, rowcount=True)
            return int(version) + 1 if written == 1 else None
        if await self._run(self.sql.save_state, params, write=True, rowcount=True) != 1:
            return None
        # Unconditional saves come only from code that bypasses the session (the core always
        # passes a version); the version they made is read back, which a race could overtake.
        rows = await self._run(self.sql.load_session, {"match_session_id": session_id, "now": params["now"]})
        return int(rows[0][4]) if rows else None

    async def increment(self, key: str, ttl: float, amount: int = 1) -> int:
        if len(key) > MAX_GUARD_KEY:
            raise ValueError(f"guard key longer than {MAX_GUARD_KEY} characters")
        now = time.time()
        params = {"guard_key": key, "amount": int(amount), "expires": now + ttl, "now": now}
        if self.family.backend != "mysql":
            rows = await self._run(self.sql.increment, params, write=True)
            return int(rows[0][0])

        # MySQL has no RETURNING: the upsert leaves the value in LAST_INSERT_ID() of its connection.
        async def body(lane: Lane) -> int:
            await self._execute(lane, self.sql.increment, params, rowcount=True)
            rows = await self._execute(lane, self.sql.last_value, {})
            return int(rows[0][0])

        return await self._call(body, write=True)

    async def delete_session(self, session_id: str) -> None:
        await self._run(self.sql.delete_session, {"match_session_id": session_id}, write=True)

    async def delete_user_sessions(self, user_id: str, keep: str | None = None) -> None:
        if keep is None:
            await self._run(self.sql.delete_user_sessions, {"match_user_id": user_id}, write=True)
        else:
            await self._run(self.sql.delete_user_sessions_but, {"match_user_id": user_id, "keep": keep}, write=True)

    async def purge_expired(self) -> int:
        """Delete expired sessions ``purge_batch`` rows per statement, pausing between
        statements so that requests are never held up behind a long delete."""
        total = 0
        async for removed in self.purge_batches():
            total += removed
        return total

    async def purge_batches(self) -> AsyncIterator[int]:
        """Each batch of the purge, as the number of rows it deleted."""
        while True:
            removed = int(await self._run(self.sql.purge, {"now": time.time()}, write=True, rowcount=True) or 0)
            yield removed
            if removed < self.purge_batch:
                break
            await asyncio.sleep(PURGE_PAUSE)
        while (
            await self._run(self.sql.purge_guards, {"now": time.time()}, write=True, rowcount=True) >= self.purge_batch
        ):
            await asyncio.sleep(PURGE_PAUSE)


@dataclass
class Statements:
    """Every statement the storage runs, built once with named parameters."""

    create_account: Any
    get_account: Any
    set_password: Any
    swap_fields: Any
    store_session: Any
    load_session: Any
    touch_session: Any
    save_state: Any
    save_state_at: Any
    increment: Any
    last_value: Any
    delete_session: Any
    delete_user_sessions: Any
    delete_user_sessions_but: Any
    purge: Any
    purge_guards: Any


def make_statements(tables: Tables, backend: str, purge_batch: int) -> Statements:
    accounts, sessions, guards = tables.accounts, tables.sessions, tables.guards
    p = bindparam
    session_values: dict[str, Any] = {
        name: p(name) for name in ("session_id", "user_id", "expires", "state", "signing_key", "version")
    }
    store: Any
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        store = pg_insert(sessions).values(**session_values)
        store = store.on_conflict_do_update(
            index_elements=["session_id"], set_={n: store.excluded[n] for n in session_values if n != "session_id"}
        )
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        store = sqlite_insert(sessions).values(**session_values)
        store = store.on_conflict_do_update(
            index_elements=["session_id"], set_={n: store.excluded[n] for n in session_values if n != "session_id"}
        )
    else:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        store = mysql_insert(sessions).values(**session_values)
        store = store.on_duplicate_key_update({n: store.inserted[n] for n in session_values if n != "session_id"})
    increment = _increment_statement(guards, backend)
    by_session = sessions.c.session_id == p("match_session_id")
    live = sessions.c.expires > p("now")
    write_state = update(sessions).values(state=p("state"), version=sessions.c.version + 1)
    return Statements(
        create_account=insert(accounts).values(
            user_id=p("user_id"), password_hash=p("password_hash"), fields=p("fields")
        ),
        get_account=select(accounts.c.password_hash, accounts.c.fields).where(accounts.c.user_id == p("match_user_id")),
        set_password=update(accounts)
        .where(accounts.c.user_id == p("match_user_id"))
        .values(password_hash=p("password_hash")),
        swap_fields=update(accounts)
        .where(accounts.c.user_id == p("match_user_id"), accounts.c.fields == p("old_fields"))
        .values(fields=p("fields"), password_hash=p("password_hash")),
        store_session=store,
        load_session=select(
            sessions.c.user_id, sessions.c.expires, sessions.c.state, sessions.c.signing_key, sessions.c.version
        ).where(by_session, live),
        touch_session=update(sessions).where(by_session).values(expires=p("expires")),
        save_state=write_state.where(by_session, live),
        save_state_at=write_state.where(by_session, live, sessions.c.version == p("match_version")),
        increment=increment,
        last_value=select(func.cast(func.last_insert_id(), BigInteger()) - _SHIFT),
        delete_session=delete(sessions).where(by_session),
        delete_user_sessions=delete(sessions).where(sessions.c.user_id == p("match_user_id")),
        delete_user_sessions_but=delete(sessions).where(
            sessions.c.user_id == p("match_user_id"), sessions.c.session_id != p("keep")
        ),
        purge=_purge_statement(sessions, sessions.c.session_id, backend, purge_batch),
        purge_guards=_purge_statement(guards, guards.c.guard_key, backend, purge_batch),
    )


def _purge_statement(table: Any, key: Any, backend: str, purge_batch: int) -> Any:
    """Delete at most ``purge_batch`` rows of ``table`` whose ``expires`` is past ``now``."""
    if backend == "mysql":
        return delete(table).where(table.c.expires <= bindparam("now")).with_dialect_options(mysql_limit=purge_batch)
    batch = select(key).where(table.c.expires <= bindparam("now")).limit(purge_batch)
    return delete(table).where(key.in_(batch.scalar_subquery()))


#: LAST_INSERT_ID() holds an unsigned number; counters may go below zero, so it holds them shifted.
_SHIFT = 1 << 62


def _remembered(value: Any) -> Any:
    """``value``, also left in this connection's ``LAST_INSERT_ID()`` (see ``last_value``)."""
    return func.cast(func.last_insert_id(value + _SHIFT), BigInteger()) - _SHIFT


def _increment_statement(guards: Any, backend: str) -> Any:
    """Add ``amount`` to the counter ``guard_key``, starting a window of ``expires`` when it is
    absent or past ``now``; one statement, so two processes never both start a window.
    PostgreSQL and SQLite return the value; MySQL leaves it in ``LAST_INSERT_ID()``."""
    p = bindparam
    values: dict[str, Any] = {"guard_key": p("guard_key"), "value": p("amount"), "expires": p("expires")}
    expired = guards.c.expires <= p("now")
    if backend == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        on_mysql = mysql_insert(guards).values(**{**values, "value": _remembered(p("amount"))})
        # MySQL assigns left to right, each seeing the ones before: value first, while expires is old.
        return on_mysql.on_duplicate_key_update(
            [
                ("value", _remembered(case((expired, p("amount")), else_=guards.c.value + p("amount")))),
                ("expires", case((expired, p("expires")), else_=guards.c.expires)),
            ]
        )
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    statement = upsert(guards).values(**values)
    return statement.on_conflict_do_update(
        index_elements=["guard_key"],
        set_={
            "value": case((expired, statement.excluded.value), else_=guards.c.value + statement.excluded.value),
            "expires": case((expired, statement.excluded.expires), else_=guards.c.expires),
        },
    ).returning(guards.c.value)


def load_sessions_statement(tables: Tables, count: int) -> Any:
    """``load_session`` for ``count`` session ids at once (parameters ``s0``.. and ``now``), with the id first."""
    sessions = tables.sessions
    return select(
        sessions.c.session_id,
        sessions.c.user_id,
        sessions.c.expires,
        sessions.c.state,
        sessions.c.signing_key,
        sessions.c.version,
    ).where(
        sessions.c.session_id.in_([bindparam(f"s{i}") for i in range(count)]),
        sessions.c.expires > bindparam("now"),
    )


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit is one append."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # Safe with WAL: a crash of the process loses nothing; a power cut at most the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
    except Exception as error:  # a read-only file: serve what can be read, writes answer 1013
        log.warning("sql storage: could not switch SQLite to WAL mode: %s", error)
    finally:
        cursor.close()


#: SQLSTATEs of a PostgreSQL that answers but refuses the URL's database or role.
_POSTGRES_REFUSALS = {"3D000", "28000", "28P01"}
#: MySQL and MariaDB error numbers of the same: access denied (to the server, to the
#: database) and unknown database.
_MYSQL_REFUSALS = {1044, 1045, 1049, 1698}


def configuration_error(error: BaseException) -> str | None:
    """The database's own words when ``error`` says the URL names a database or a role that
    does not exist or credentials it refuses (a configuration mistake); else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        found = todo.pop()
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        args = getattr(found, "args", ())
        if args and isinstance(args[0], int) and args[0] in _MYSQL_REFUSALS:
            text = str(args[1]) if len(args) > 1 else _first_line(found)
            quoted = re.fullmatch(r"\(\d+, ['\"](.*)['\"]\)", text)  # asyncmy repeats the number
            return quoted.group(1) if quoted else text
        state = getattr(found, "sqlstate", None) or getattr(found, "pgcode", None)
        if isinstance(state, str) and state in _POSTGRES_REFUSALS:
            return _first_line(found)
        orig = getattr(found, "orig", None)
        todo.extend((found.__cause__, found.__context__, orig if isinstance(orig, BaseException) else None))
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
