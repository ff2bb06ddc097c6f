"""Contract test classes for storage backends and event buses (see ``toto.testing``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from toto.eventbus import EventBus
from toto.storage import DuplicateAccount, SessionRecord, Storage

NESTED_STATE = {
    "text": "héllo wörld ✓ 漢字 🎉",
    "numbers": [1, 2.5, -3, 10**12],
    "nested": {"a": {"b": {"c": [True, False, None, {"d": "e"}]}}},
    "empty": {},
}


def _state_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def run_storages(body: Callable[..., Awaitable[Any]], *stores: Storage) -> Any:
    """Open ``stores``, await ``body(*stores)`` in a new event loop, and close them whatever happens."""

    async def main() -> Any:
        for store in stores:
            await store.open()
        try:
            return await body(*stores)
        finally:
            for store in stores:
                await store.close()

    return asyncio.run(main())


def session_record(session_id: str, user_id: str | None = "alice", ttl: float = 3600, **kw: Any) -> SessionRecord:
    """A session for ``user_id`` (None: anonymous) that expires ``ttl`` seconds from now."""
    return SessionRecord(session_id=session_id, user_id=user_id, expires=time.time() + ttl, **kw)


class StorageContract:
    """Subclass with a ``storage_factory`` fixture returning ``() -> Storage`` (unopened).

    Set ``shared = False`` for a backend whose instances do not share data (the
    in-process memory storage); the tests across instances then say they do not apply.
    """

    shared = True

    def run(self, storage_factory: Callable[[], Storage], body: Callable[..., Awaitable[Any]], count: int = 1) -> Any:
        return run_storages(body, *(storage_factory() for _ in range(count)))

    session = staticmethod(session_record)

    def test_ping(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.ping() is True

        self.run(storage_factory, body)

    def test_account_round_trip(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.get_account("nobody") is None
            await s.create_account("alice", "hash-1", {"name": "Alice", "tags": ["a", "ü"]})
            account = await s.get_account("alice")
            assert account is not None
            assert (account.user_id, account.password_hash) == ("alice", "hash-1")
            assert account.fields == {"name": "Alice", "tags": ["a", "ü"]}

        self.run(storage_factory, body)

    def test_unusual_user_ids(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            for user_id in ("ünïcødé-用户", "x" * 256, "a b@c.d", "o'brien\"; --"):
                await s.create_account(user_id, "h", {})
                account = await s.get_account(user_id)
                assert account is not None and account.user_id == user_id

        self.run(storage_factory, body)

    def test_duplicate_account_raises(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.create_account("bob", "h1", {})
            try:
                await s.create_account("bob", "h2", {})
            except DuplicateAccount:
                pass
            else:
                raise AssertionError("a second create_account for one user id must raise DuplicateAccount")
            account = await s.get_account("bob")
            assert account is not None and account.password_hash == "h1"

        self.run(storage_factory, body)

    def test_create_race_gives_one_account(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            async def attempt(i: int) -> bool:
                try:
                    await s.create_account("racer", f"hash-{i}", {"i": i})
                    return True
                except DuplicateAccount:
                    return False

            wins = await asyncio.gather(*(attempt(i) for i in range(100)))
            assert sum(wins) == 1, f"{sum(wins)} creates succeeded"
            account = await s.get_account("racer")
            assert account is not None
            winner = wins.index(True)
            assert account.password_hash == f"hash-{winner}" and account.fields == {"i": winner}

        self.run(storage_factory, body)

    def test_create_race_across_instances(self, storage_factory: Callable[[], Storage]) -> None:
        if not self.shared:
            import pytest

            pytest.skip("instances of this backend do not share data (one process only)")

        async def body(a: Storage, b: Storage) -> None:
            async def attempt(s: Storage, i: int) -> bool:
                try:
                    await s.create_account("twin", f"h{i}", {})
                    return True
                except DuplicateAccount:
                    return False

            wins = await asyncio.gather(*(attempt(a if i % 2 else b, i) for i in range(40)))
            assert sum(wins) == 1

        self.run(storage_factory, body, count=2)

    def test_update_account(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.create_account("carol", "old", {"a": 1, "b": 2})
            await s.update_account("carol", password_hash="new")
            await s.update_account("carol", fields={"b": 3, "c": "ç"})
            account = await s.get_account("carol")
            assert account is not None
            assert account.password_hash == "new"
            assert account.fields == {"a": 1, "b": 3, "c": "ç"}

        self.run(storage_factory, body)

    def test_session_round_trip(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.load_session("missing") is None
            record = self.session("s1", key="k" * 43, state=_state_bytes(NESTED_STATE))
            await s.store_session(record)
            loaded = await s.load_session("s1")
            assert loaded is not None
            assert (loaded.session_id, loaded.user_id, loaded.key) == ("s1", "alice", "k" * 43)
            assert abs(loaded.expires - record.expires) < 0.01
            assert loaded.state == record.state

        self.run(storage_factory, body)

    def test_anonymous_session(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("anon", user_id=None))
            loaded = await s.load_session("anon")
            assert loaded is not None and loaded.user_id is None and loaded.key is None

        self.run(storage_factory, body)

    def test_expired_session_never_returned(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("past", ttl=-10))
            assert await s.load_session("past") is None
            await s.store_session(self.session("soon", ttl=1.0))
            assert await s.load_session("soon") is not None
            await asyncio.sleep(1.3)
            assert await s.load_session("soon") is None

        self.run(storage_factory, body)

    def test_touch_slides_expiry(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("slide", ttl=1.0))
            new_expiry = time.time() + 120
            await s.touch_session("slide", new_expiry)
            await asyncio.sleep(1.3)
            loaded = await s.load_session("slide")
            assert loaded is not None, "touch_session must push the expiry forward"
            assert abs(loaded.expires - new_expiry) < 0.01
            await s.touch_session("never-existed", new_expiry)
            assert await s.load_session("never-existed") is None

        self.run(storage_factory, body)

    def test_state_round_trip(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("st"))
            blob = _state_bytes(NESTED_STATE)
            await s.save_state("st", blob)
            loaded = await s.load_session("st")
            assert loaded is not None and loaded.state == blob
            binary = bytes(range(256)) * 4
            await s.save_state("st", binary)
            loaded = await s.load_session("st")
            assert loaded is not None and loaded.state == binary
            await s.save_state("gone", b"{}")
            assert await s.load_session("gone") is None, "save_state must not create a session"

        self.run(storage_factory, body)

    def test_concurrent_state_saves_do_not_interfere(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            ids = [f"c{i}" for i in range(50)]
            await asyncio.gather(*(s.store_session(self.session(i, user_id=f"u{n % 5}")) for n, i in enumerate(ids)))
            for round_ in range(3):
                await asyncio.gather(*(s.save_state(i, _state_bytes({"id": i, "round": round_})) for i in ids))
            loaded = await asyncio.gather(*(s.load_session(i) for i in ids))
            for sid, record in zip(ids, loaded):
                assert record is not None and record.state == _state_bytes({"id": sid, "round": 2})

        self.run(storage_factory, body)

    def test_delete_session(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("d1"))
            await s.store_session(self.session("d2"))
            await s.delete_session("d1")
            await s.delete_session("d1")
            assert await s.load_session("d1") is None
            assert await s.load_session("d2") is not None

        self.run(storage_factory, body)

    def test_delete_user_sessions_keeps_one(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            for sid in ("u1a", "u1b", "u1c"):
                await s.store_session(self.session(sid, user_id="user1"))
            await s.store_session(self.session("u2a", user_id="user2"))
            await s.delete_user_sessions("user1", keep="u1b")
            assert await s.load_session("u1a") is None
            assert await s.load_session("u1c") is None
            assert await s.load_session("u1b") is not None
            assert await s.load_session("u2a") is not None
            await s.delete_user_sessions("user1")
            assert await s.load_session("u1b") is None
            assert await s.load_session("u2a") is not None

        self.run(storage_factory, body)

    def test_replacing_a_session(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("r", user_id="x", state=b"1"))
            await s.store_session(self.session("r", user_id="x", state=b"2"))
            loaded = await s.load_session("r")
            assert loaded is not None and loaded.state == b"2"
            await s.delete_user_sessions("x")
            assert await s.load_session("r") is None

        self.run(storage_factory, body)

    def test_purge_expired(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("old", ttl=-5))
            await s.store_session(self.session("new", ttl=600))
            removed = await s.purge_expired()
            assert isinstance(removed, int) and removed >= 0
            assert await s.load_session("old") is None
            assert await s.load_session("new") is not None

        self.run(storage_factory, body)

    def test_native_handle(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert s.db is not None, "Storage.db must expose the backend's native handle"

        self.run(storage_factory, body)


class EventBusContract:
    """Subclass with a ``bus_factory`` fixture returning ``() -> EventBus`` (unopened).

    Every bus the factory makes must belong to the same deployment, as if each were
    a different server process.
    """

    #: How long a delivery may take before the test fails.
    delivery_timeout = 5.0

    def run(self, bus_factory: Callable[[], EventBus], body: Callable[..., Awaitable[Any]], count: int = 2) -> Any:
        async def main() -> Any:
            buses = [bus_factory() for _ in range(count)]
            inboxes: list[asyncio.Queue[tuple[str, bytes]]] = []
            for bus in buses:
                await bus.open()
                inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
                bus.subscribe(self._enqueue(inbox))
                inboxes.append(inbox)
            await asyncio.sleep(0.2)  # let subscriptions settle before the first publish
            try:
                return await body(buses, inboxes)
            finally:
                for bus in buses:
                    await bus.close()

        return asyncio.run(main())

    @staticmethod
    def _enqueue(inbox: asyncio.Queue[tuple[str, bytes]]) -> Callable[[str, bytes, Any], None]:
        def deliver(name: str, payload: bytes, metadata: Any) -> None:
            inbox.put_nowait((name, payload))

        return deliver

    async def receive(self, inbox: asyncio.Queue[tuple[str, bytes]]) -> tuple[str, bytes]:
        return await asyncio.wait_for(inbox.get(), self.delivery_timeout)

    async def settle(self) -> None:
        await asyncio.sleep(0.5)

    def test_broadcast_reaches_every_server(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            await buses[0].publish("greet", b"\x00hello\xff", broadcast=True)
            for inbox in inboxes:
                assert await self.receive(inbox) == ("greet", b"\x00hello\xff")

        self.run(bus_factory, body, count=3)

    def test_unicast_reaches_exactly_one(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            for i in range(20):
                await buses[i % 2].publish("job", str(i).encode(), broadcast=False)
            await asyncio.sleep(0.2)
            got: list[bytes] = []
            deadline = time.monotonic() + self.delivery_timeout
            while len(got) < 20 and time.monotonic() < deadline:
                for inbox in inboxes:
                    while not inbox.empty():
                        got.append(inbox.get_nowait()[1])
                await asyncio.sleep(0.05)
            await self.settle()
            for inbox in inboxes:
                while not inbox.empty():
                    got.append(inbox.get_nowait()[1])
            assert sorted(got, key=int) == [str(i).encode() for i in range(20)], got

        self.run(bus_factory, body, count=2)

    def test_order_and_names_are_kept(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            for i in range(50):
                await buses[0].publish(f"n{i % 3}", str(i).encode())
            received = [await self.receive(inboxes[1]) for _ in range(50)]
            assert received == [(f"n{i % 3}", str(i).encode()) for i in range(50)]

        self.run(bus_factory, body, count=2)

    def test_large_payload(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            payload = bytes(range(256)) * 4096  # 1 MiB
            await buses[1].publish("big", payload)
            assert await self.receive(inboxes[0]) == ("big", payload)

        self.run(bus_factory, body, count=2)

    def test_metadata_travels_with_the_event(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            seen: asyncio.Queue[tuple[int, str, bytes, Any]] = asyncio.Queue()

            def recorder(index: int) -> Callable[[str, bytes, Any], None]:
                def record(name: str, payload: bytes, metadata: Any) -> None:
                    seen.put_nowait((index, name, payload, metadata))

                return record

            for index, bus in enumerate(buses):
                bus.subscribe(recorder(index))
            traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            await buses[0].publish("traced", b"{}", True, {"traceparent": traceparent, "note": "ünï"})
            await buses[0].publish("plain", b"[]", True)
            await buses[1].publish("one", b"1", False, {"traceparent": traceparent})
            got = [await asyncio.wait_for(seen.get(), self.delivery_timeout) for _ in range(5)]
            await self.settle()
            assert seen.empty(), "a broadcast=False event reached more than one bus"
            for index in (0, 1):
                mine = [(name, payload, metadata) for i, name, payload, metadata in got if i == index and name != "one"]
                assert mine == [("traced", b"{}", {"traceparent": traceparent, "note": "ünï"}), ("plain", b"[]", None)]
            assert [(name, metadata) for _, name, _, metadata in got if name == "one"] == [
                ("one", {"traceparent": traceparent})
            ]

        self.run(bus_factory, body, count=2)

    def test_ping_when_open(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[asyncio.Queue[tuple[str, bytes]]]) -> None:
            assert await buses[0].ping() is True

        self.run(bus_factory, body, count=1)
