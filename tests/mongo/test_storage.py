"""MongoStorage passes the contract kit against SecantusDB, plus what is special to MongoDB:
the unique and TTL indexes, reads that never return an expired session, account fields with
any names, the AsyncDatabase handle, and a server killed and restarted."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from toto.exceptions import PluginError, StorageUnavailable
from toto.storage import DuplicateAccount
from toto.testing import BackendContract, StorageContract, assert_storage_unavailable_in_time
from toto.testing import run_storages as run
from toto.testing import session_record as session
from toto_mongo import MongoStorage

from tests.mongo.conftest import STEADY
from tests.mongo.standin import StandIn


class TestMongoBackend(BackendContract):
    """Collection prefixes keep apps apart; MongoDB cut, black-holed and frozen answers 1013 in time."""


class TestMongoStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, mongo_url: str) -> Callable[[], MongoStorage]:
        return lambda: MongoStorage(url=mongo_url, timeout=STEADY)


@pytest.fixture
def raw(mongo_url: str, database: str) -> Iterator[Any]:
    """A blocking pymongo handle on the test's database, to look behind the storage."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    try:
        yield client[database]
    finally:
        client.close()


def wait_until(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_db_is_the_async_database_of_the_url(mongo_url: str, database: str, raw: Any) -> None:
    async def body(s: MongoStorage) -> None:
        assert isinstance(s.db, AsyncDatabase)
        assert s.db.name == database
        await s.db["notes"].insert_one({"_id": 1, "text": "mine"})
        assert await s.db["notes"].find_one({"_id": 1}) == {"_id": 1, "text": "mine"}

    run(body, MongoStorage(mongo_url, timeout=STEADY))
    assert raw["notes"].count_documents({}) == 1


def test_indexes_unique_user_id_and_session_ttl(mongo_url: str, raw: Any) -> None:
    run(lambda s: s.ping(), MongoStorage(mongo_url, timeout=STEADY))
    accounts = raw["toto_accounts"].index_information()
    assert accounts["user_id_unique"]["unique"] is True
    assert accounts["user_id_unique"]["key"] == [("user_id", 1)]
    sessions = raw["toto_sessions"].index_information()
    assert sessions["expires_ttl"]["key"] == [("expires_at", 1)]
    assert sessions["expires_ttl"]["expireAfterSeconds"] == 0
    assert sessions["user_id"]["key"] == [("user_id", 1)]


def test_a_raw_duplicate_insert_is_refused_by_the_index(mongo_url: str, raw: Any) -> None:
    """The uniqueness is MongoDB's, not a read-then-write of the plugin."""
    from pymongo.errors import DuplicateKeyError

    run(lambda s: s.create_account("only", "h", {}), MongoStorage(mongo_url, timeout=STEADY))
    with pytest.raises(DuplicateKeyError):
        raw["toto_accounts"].insert_one({"user_id": "only", "password_hash": "x", "fields": {}})


def test_an_expired_session_is_never_read_even_before_the_ttl_monitor_deletes_it(mongo_url: str, raw: Any) -> None:
    run(lambda s: s.ping(), MongoStorage(mongo_url, timeout=STEADY))
    # Expired by its exact expiry, while its TTL date is a day away: only the read filter stands
    # between the caller and this document.
    far = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    raw["toto_sessions"].insert_one(
        {"_id": "stale", "user_id": "u", "expires": time.time() - 1, "expires_at": far, "state": b"", "key": None}
    )

    async def body(s: MongoStorage) -> None:
        assert await s.load_session("stale") is None
        await s.touch_session("stale", time.time() + 600)
        assert await s.load_session("stale") is None, "touching an expired session must not revive it"

    run(body, MongoStorage(mongo_url, timeout=STEADY))
    assert raw["toto_sessions"].count_documents({"_id": "stale"}) == 1, "the document is still there"


def test_mongodb_deletes_expired_sessions_by_itself(mongo_url: str, raw: Any) -> None:
    async def body(s: MongoStorage) -> None:
        await s.store_session(session("brief", ttl=1.0))
        await s.store_session(session("long", ttl=600))

    run(body, MongoStorage(mongo_url, timeout=STEADY))
    assert raw["toto_sessions"].count_documents({"_id": "brief"}) == 1
    # The stand-in's TTL monitor runs every second (mongod's every 60 s).
    assert wait_until(lambda: raw["toto_sessions"].count_documents({"_id": "brief"}) == 0)
    assert raw["toto_sessions"].count_documents({"_id": "long"}) == 1


def test_touch_moves_the_ttl_date_with_the_expiry(mongo_url: str, raw: Any) -> None:
    new_expiry = time.time() + 7200

    async def body(s: MongoStorage) -> None:
        await s.store_session(session("slide", ttl=60))
        await s.touch_session("slide", new_expiry)

    run(body, MongoStorage(mongo_url, timeout=STEADY))
    document = raw["toto_sessions"].find_one({"_id": "slide"})
    assert document["expires"] == new_expiry
    ttl_date = document["expires_at"].replace(tzinfo=datetime.timezone.utc).timestamp()
    assert 0 <= ttl_date - new_expiry < 0.002


def test_delete_user_sessions_is_one_delete_many(mongo_url: str, raw: Any) -> None:
    async def body(s: MongoStorage) -> None:
        for i in range(10):
            await s.store_session(session(f"m{i}", user_id="many"))
        await s.store_session(session("other", user_id="someone"))
        await s.delete_user_sessions("many", keep="m4")
        assert [i for i in range(10) if await s.load_session(f"m{i}") is not None] == [4]
        assert await s.load_session("other") is not None

    run(body, MongoStorage(mongo_url, timeout=STEADY))
    assert sorted(d["_id"] for d in raw["toto_sessions"].find()) == ["m4", "other"]


def test_account_fields_with_any_names_round_trip(mongo_url: str) -> None:
    """Names MongoDB gives a meaning (dots, a leading $) are escaped on the way in and out."""
    fields = {"a.b": 1, "$where": "text", "100%": {"nested.key": [{"$x": "%2E"}]}}

    async def body(s: MongoStorage) -> None:
        await s.create_account("fields", "h", fields)
        await s.update_account("fields", fields={"c.d": 2, "$set": {"e.f": 3}})
        account = await s.get_account("fields")
        assert account is not None
        assert account.fields == {**fields, "c.d": 2, "$set": {"e.f": 3}}

    run(body, MongoStorage(mongo_url, timeout=STEADY))


def test_options_pick_url_prefix_timeout_and_refuse_a_foreign_url(mongo_url: str) -> None:
    class Options:
        database_url = mongo_url
        mongo_collection_prefix = "myapp_"
        mongo_timeout = 1.5

    storage = MongoStorage.from_options(Options())
    assert (storage.url, storage.prefix, storage.timeout) == (mongo_url, "myapp_", 1.5)
    Options.database_url = "redis://127.0.0.1:6379/0"
    with pytest.raises(PluginError, match="needs a MongoDB URL"):
        MongoStorage.from_options(Options())


def test_a_killed_server_gives_storage_unavailable_quickly_and_a_restart_heals(private_standin: StandIn) -> None:
    async def body(s: MongoStorage) -> None:
        await s.create_account("before", "h", {"k": 1})
        await s.store_session(session("s1", user_id="before"))

        private_standin.kill()
        await assert_storage_unavailable_in_time(
            (s.load_session("s1"), s.get_account("before"), s.store_session(session("s2")))
        )
        assert await s.ping() is False

        private_standin.start()  # same port, same directory
        loaded = await s.load_session("s1")
        assert loaded is not None and loaded.user_id == "before", "the first call after the restart succeeds"
        account = await s.get_account("before")
        assert account is not None and account.fields == {"k": 1}
        with pytest.raises(DuplicateAccount):
            await s.create_account("before", "again", {})
        assert await s.ping() is True

    run(body, MongoStorage(private_standin.url("restart"), timeout=1.0))


def test_many_calls_waiting_on_a_dead_server_all_fail_in_time(private_standin: StandIn) -> None:
    """Calls that arrive together share one attempt to reach MongoDB (and to make the
    indexes again) instead of queueing behind each other."""

    async def body(s: MongoStorage) -> None:
        await s.create_account("crowd", "h", {})
        private_standin.kill()
        started = time.monotonic()
        calls = [s.get_account("crowd") for _ in range(15)] + [s.load_session(f"s{i}") for i in range(15)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert time.monotonic() - started < 5
        assert all(isinstance(o, StorageUnavailable) for o in outcomes), outcomes
        started = time.monotonic()
        outcomes = await asyncio.gather(*(s.get_account("crowd") for _ in range(15)), return_exceptions=True)
        assert time.monotonic() - started < 5
        assert all(isinstance(o, StorageUnavailable) for o in outcomes), outcomes
        private_standin.start()
        assert all(a is not None for a in await asyncio.gather(*(s.get_account("crowd") for _ in range(15))))

    run(body, MongoStorage(private_standin.url("crowd"), timeout=1.0))


def test_storage_opens_while_the_server_is_down_and_makes_its_indexes_when_it_is_up(
    private_standin: StandIn,
) -> None:
    private_standin.kill()

    async def body(s: MongoStorage) -> None:
        with pytest.raises(StorageUnavailable):
            await s.get_account("x")
        private_standin.start()
        await s.create_account("x", "h", {})
        with pytest.raises(DuplicateAccount):
            await s.create_account("x", "h2", {})

    run(body, MongoStorage(private_standin.url("late"), timeout=1.0))
    client: MongoClient[dict[str, Any]] = MongoClient(private_standin.url("late"))
    try:
        assert "user_id_unique" in client["late"]["toto_accounts"].index_information()
    finally:
        client.close()
