"""SqlStorage passes the contract kit on real SQLite, PostgreSQL and MariaDB, plus what is special to SQL:
tables under a prefix with a schema version, WAL, batched purges, field merges, long values, URLs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from toto.exceptions import PluginError
from toto.testing import BackendContract, StorageContract
from toto.testing import run_storages as run
from toto.testing import session_record as session
from toto_sql import SqlStorage
from toto_sql.schema import SCHEMA_VERSION
from toto_sql.storage import READ_BATCH
from toto_sql.urls import resolve


class TestSqlStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, url: str, prefix: str) -> Callable[[], SqlStorage]:
        # A generous timeout: these are not outage tests, and a loaded CI machine can take
        # seconds to hand 50 concurrent statements a connection (the default is 2 s).
        return lambda: SqlStorage(url, prefix=prefix, timeout=15)


class TestSqlBackend(BackendContract):
    """Prefixes keep apps apart; PostgreSQL and MariaDB cut, black-holed and frozen answer 1013 in time."""


def test_tables_carry_the_prefix_and_a_schema_version(url: str, prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        tables = s.tables
        assert [t.name for t in (tables.accounts, tables.sessions, tables.schema_version)] == [
            f"{prefix}accounts",
            f"{prefix}sessions",
            f"{prefix}schema_version",
        ]
        async with s.db.connect() as conn:
            version = (await conn.execute(select(tables.schema_version.c.version))).scalar_one()
            assert version == SCHEMA_VERSION
            await conn.execute(update(tables.schema_version).values(version=SCHEMA_VERSION + 1))
            await conn.commit()

    run(body, SqlStorage(url, prefix=prefix))
    run(lambda s: s.ping(), SqlStorage(url, prefix=prefix + "other_"))  # another app's tables are separate
    with pytest.raises(PluginError, match="newer than this toto-sql knows"):
        run(lambda s: s.ping(), SqlStorage(url, prefix=prefix))


def test_tables_of_schema_version_1_are_migrated_keeping_their_sessions(url: str, prefix: str) -> None:
    async def make_version_1(s: SqlStorage) -> None:
        await s.store_session(session("old-session", state=b"kept"))
        async with s.db.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {prefix}sessions DROP COLUMN version"))
            await conn.execute(text(f"DROP TABLE {prefix}guards"))
            await conn.execute(update(s.tables.schema_version).values(version=1))

    async def use(s: SqlStorage) -> None:
        loaded = await s.load_session("old-session")
        assert loaded is not None and (loaded.state, loaded.version) == (b"kept", 0)
        assert await s.save_state("old-session", b"new", 0) == 1
        assert await s.increment("guard:after-migration", 60) == 1
        async with s.db.connect() as conn:
            assert (await conn.execute(select(s.tables.schema_version.c.version))).scalar_one() == SCHEMA_VERSION

    run(make_version_1, SqlStorage(url, prefix=prefix))
    run(use, SqlStorage(url, prefix=prefix))


def test_a_second_open_keeps_the_data(url: str, prefix: str) -> None:
    run(lambda s: s.create_account("kept", "h", {"n": 1}), SqlStorage(url, prefix=prefix))
    account = run(lambda s: s.get_account("kept"), SqlStorage(url, prefix=prefix))
    assert account is not None and account.fields == {"n": 1}


def test_db_is_an_async_engine_for_the_apps_own_tables(url: str, prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        assert isinstance(s.db, AsyncEngine)
        async with s.db.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {prefix}mine (n INTEGER)"))
            await conn.execute(text(f"INSERT INTO {prefix}mine (n) VALUES (1), (2)"))  # noqa: S608 (our own prefix)
        async with s.db.connect() as conn:
            assert (await conn.execute(text(f"SELECT SUM(n) FROM {prefix}mine"))).scalar() == 3  # noqa: S608

    run(body, SqlStorage(url, prefix=prefix))


def test_sqlite_runs_in_wal_mode(database_url: Callable[[str], str], prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        async with s.db.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"

    run(body, SqlStorage(database_url("sqlite"), prefix=prefix))


def test_purge_deletes_in_bounded_batches(url: str, prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        now = time.time()
        rows = [
            {"session_id": f"old{i:05d}", "user_id": "u", "expires": now - 10, "state": b"", "signing_key": None}
            for i in range(260)
        ]
        rows += [
            {"session_id": f"new{i}", "user_id": "u", "expires": now + 600, "state": b"", "signing_key": None}
            for i in range(5)
        ]
        async with s.db.begin() as conn:
            await conn.execute(insert(s.tables.sessions), rows)
        batches = [removed async for removed in s.purge_batches()]
        assert batches == [100, 100, 60]
        async with s.db.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(s.tables.sessions))).scalar()
        assert left == 5
        assert await s.purge_expired() == 0

    run(body, SqlStorage(url, prefix=prefix, purge_batch=100))


def test_concurrent_field_updates_are_all_kept(url: str, prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        await s.create_account("merge", "h", {"base": 0})
        await asyncio.gather(*(s.update_account("merge", fields={f"f{i}": i}) for i in range(20)))
        await s.update_account("merge", password_hash="h2", fields={"base": 1})
        account = await s.get_account("merge")
        assert account is not None and account.password_hash == "h2"
        assert account.fields == {"base": 1, **{f"f{i}": i for i in range(20)}}

    run(body, SqlStorage(url, prefix=prefix))


def test_long_values(url: str, prefix: str) -> None:
    """Large fields and state are stored whole (LONGTEXT and LONGBLOB on MySQL)."""

    async def body(s: SqlStorage) -> None:
        big = "ü" * 300_000
        await s.create_account("big", "h", {"bio": big})
        account = await s.get_account("big")
        assert account is not None and account.fields["bio"] == big
        state = bytes(range(256)) * 2048  # 512 KiB
        await s.store_session(session("bigstate", user_id="big", state=state))
        loaded = await s.load_session("bigstate")
        assert loaded is not None and loaded.state == state

    run(body, SqlStorage(url, prefix=prefix))


def test_user_ids_are_compared_exactly(url: str, prefix: str) -> None:
    """MySQL's default collations would make these one user; toto-sql's columns compare bytes."""

    async def body(s: SqlStorage) -> None:
        for user_id in ("zoë", "zoe", "zoé"):
            await s.create_account(user_id, user_id, {})
        for user_id in ("zoë", "zoe", "zoé"):
            account = await s.get_account(user_id)
            assert account is not None and account.password_hash == user_id

    run(body, SqlStorage(url, prefix=prefix))


@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        ("postgres", None, "database 'postgres' needs a URL: --database_url=postgresql://"),
        ("postgres", "mysql://root@127.0.0.1/test", "for that URL use --database=mysql"),
        ("mysql", "mysql+pymysql://root@127.0.0.1/test", "not an asyncio driver"),
        ("sqlite", "nonsense", "invalid database_url"),
    ],
)
def test_urls_that_cannot_work_are_refused_with_a_message(name: str, url: str | None, message: str) -> None:
    with pytest.raises(PluginError, match=message.replace("+", r"\+")):
        resolve(name, url)


def test_plain_urls_get_their_asyncio_driver() -> None:
    assert str(resolve("sqlite", None)[1]) == "sqlite+aiosqlite:///./toto.db"
    assert str(resolve("postgresql", "postgres://u@h/db")[1]) == "postgresql+asyncpg://u@h/db"
    assert str(resolve("mariadb", "mariadb://root@h/db")[1]) == "mysql+asyncmy://root@h/db?charset=utf8mb4"


def test_session_reads_of_one_loop_turn_answer_each_request_exactly(url: str, prefix: str) -> None:
    """Reads started together go out as one statement (chunks of READ_BATCH ids): each caller
    gets its own session, never an expired one, None for an unknown id, and repeats agree."""

    async def body(s: SqlStorage) -> None:
        live = [f"live{i}" for i in range(READ_BATCH + 30)]  # more than one chunk
        for i, session_id in enumerate(live):
            await s.store_session(session(session_id, user_id=f"u{i}", state=f"s{i}".encode()))
        await s.store_session(session("expired", user_id="gone", ttl=-1))
        wanted = [*live, "expired", "unknown", live[0], "expired", live[-1]]
        loaded = await asyncio.gather(*(s.load_session(session_id) for session_id in wanted))
        for session_id, record in zip(wanted, loaded):
            if session_id in ("expired", "unknown"):
                assert record is None, session_id
            else:
                assert record is not None and record.session_id == session_id
                i = live.index(session_id)
                assert (record.user_id, record.state) == (f"u{i}", f"s{i}".encode())
        assert loaded[0] is not loaded[-3], "each caller gets its own record"
        assert await s.load_session(live[1]) is not None  # a lone read

    run(body, SqlStorage(url, prefix=prefix))


def test_servers_starting_together_create_the_tables_once(
    url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    stores = [SqlStorage(url, prefix=prefix) for _ in range(4)]

    async def body(*opened: SqlStorage) -> None:
        assert all(s._schema_ready for s in opened)
        await opened[0].create_account("together", "h", {})
        assert all([await s.get_account("together") is not None for s in opened])

    async def main() -> None:
        await asyncio.gather(*(s.open() for s in stores))  # each its own connections, as separate processes
        try:
            await body(*stores)
        finally:
            for s in stores:
                await s.close()

    with caplog.at_level("WARNING", logger="toto.sql"):
        asyncio.run(main())
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_an_in_memory_sqlite_database_works_for_one_process(prefix: str) -> None:
    async def body(s: SqlStorage) -> None:
        await s.create_account("mem", "h", {"a": 1})
        await asyncio.gather(*(s.store_session(session(f"m{i}", user_id="mem")) for i in range(20)))
        await s.delete_user_sessions("mem", keep="m3")
        assert [i for i in range(20) if await s.load_session(f"m{i}") is not None] == [3]
        account = await s.get_account("mem")
        assert account is not None and account.fields == {"a": 1}

    run(body, SqlStorage("sqlite://", prefix=prefix))


def test_asyncpg_errors_are_named_by_their_sqlstate_class() -> None:
    """toto-sql names asyncpg's own errors itself (no private SQLAlchemy hook): duplicates are
    integrity errors, lost connections and shutdowns operational ones, the rest database errors."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
    from toto_sql.lanes import driver_error

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    cases = [
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), dbapi.IntegrityError),
        (asyncpg.exceptions.StringDataRightTruncationError("value too long"), dbapi.DataError),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), dbapi.OperationalError),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), dbapi.OperationalError),
        (asyncpg.exceptions.InterfaceError("connection is closed"), dbapi.InterfaceError),
        (asyncpg.exceptions.UndefinedTableError("no such table"), dbapi.ProgrammingError),
    ]
    for error, kind in cases:
        translated = driver_error(dbapi, error)
        assert type(translated) is kind and translated.__cause__ is error, (error, translated)
    timeout = TimeoutError("no answer")
    assert driver_error(dbapi, timeout) is timeout, "errors of no driver stay as they are"
