"""Contract test classes for storage backends and event buses (see ``toto.testing``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from toto.eventbus import AT_LEAST_ONCE, Delivery, Event, EventBus, Position
from toto.storage import DuplicateAccount, SessionRecord, Storage
from toto.testing.guards import GuardContract

NESTED_STATE = {
    "text": "héllo wörld ✓ 漢字 🎉",
    "numbers": [1, 2.5, -3, 10**12],
    "nested": {"a": {"b": {"c": [True, False, None, {"d": "e"}]}}},
    "empty": {},
}


def _state_bytes(value: Any) -> bytes:
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


class StorageContract(GuardContract):
    """Subclass with a ``storage_factory`` fixture returning ``() -> Storage`` (unopened).

    It includes ``GuardContract``: the primitives that guard a deployment.

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


#: What a contract test's subscriber collects.
Inbox = asyncio.Queue[Event]


class EventBusContract:
    """Subclass with a ``bus_factory`` fixture returning ``() -> EventBus`` (unopened).

    Every bus the factory makes must belong to the same deployment, as if each were
    a different server process. Set ``shared = False`` for a bus whose instances do not
    reach each other (the in-process ``local`` bus): every test then runs on one instance.

    The tests check what the bus declares in ``delivery`` (``toto.eventbus.Delivery``):
    broadcasts reach every server once and ``broadcast=False`` events exactly one, each
    publisher's events arrive in order and never twice, every broadcast carries a
    position numbered as ``delivery.sequence`` says, ``replay`` answers as
    ``delivery.history`` says, and, when the subclass overrides ``interrupt`` (cut one
    bus's connection to its service), a reconnect loses no more than ``delivery.guarantee``
    allows.
    """

    #: How long a delivery may take before the test fails.
    delivery_timeout = 5.0
    #: False for a bus whose instances do not share events (one process only).
    shared = True

    async def interrupt(self, bus: EventBus) -> None:
        """Cut ``bus``'s connection to its service the way a network fault would, and return
        at once; the bus must notice and reconnect by itself. Override it to run
        ``test_a_reconnect_keeps_the_promise``."""
        import pytest

        pytest.skip("this bus's tests give no way to cut its connection (override interrupt)")

    def run(self, bus_factory: Callable[[], EventBus], body: Callable[..., Awaitable[Any]], count: int = 2) -> Any:
        count = count if self.shared else 1

        async def main() -> Any:
            buses = [bus_factory() for _ in range(count)]
            inboxes: list[Inbox] = []
            for bus in buses:
                await bus.open()
                inbox: Inbox = asyncio.Queue()
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
    def _enqueue(inbox: Inbox) -> Callable[..., None]:
        def deliver(
            name: str, payload: bytes, metadata: Mapping[str, str] | None = None, position: Position | None = None
        ) -> None:
            inbox.put_nowait(Event(name, payload, metadata, position))

        return deliver

    async def receive(self, inbox: Inbox) -> tuple[str, bytes]:
        event = await self.receive_event(inbox)
        return event.name, event.payload

    async def receive_event(self, inbox: Inbox) -> Event:
        return await asyncio.wait_for(inbox.get(), self.delivery_timeout)

    async def collect(self, inbox: Inbox, count: int) -> list[Event]:
        """``count`` events of ``inbox``, then whatever else arrives while the bus settles."""
        got = [await self.receive_event(inbox) for _ in range(count)]
        await self.settle()
        while not inbox.empty():
            got.append(inbox.get_nowait())
        return got

    async def settle(self) -> None:
        await asyncio.sleep(0.5)

    @staticmethod
    def delivery_of(bus: EventBus) -> Delivery:
        delivery = getattr(bus, "delivery", None)
        assert isinstance(delivery, Delivery), (
            f"{type(bus).__name__} must declare its delivery contract: delivery = toto.eventbus.Delivery(...)"
        )
        return delivery

    def test_delivery_is_declared(self, bus_factory: Callable[[], EventBus]) -> None:
        delivery = self.delivery_of(bus_factory())
        assert delivery.reconnect.strip(), "say what a reconnect loses"

    def test_broadcast_reaches_every_server(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            sent = await buses[0].publish("greet", b"\x00hello\xff", broadcast=True)
            assert isinstance(sent, Position), "publish answers a broadcast's position"
            for inbox in inboxes:
                event = await self.receive_event(inbox)
                assert (event.name, event.payload, event.position) == ("greet", b"\x00hello\xff", sent)

        self.run(bus_factory, body, count=3)

    def test_unicast_reaches_exactly_one(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            for i in range(20):
                assert await buses[i % len(buses)].publish("job", str(i).encode(), broadcast=False) is None
            got: list[Event] = []
            deadline = time.monotonic() + self.delivery_timeout
            while len(got) < 20 and time.monotonic() < deadline:
                for inbox in inboxes:
                    while not inbox.empty():
                        got.append(inbox.get_nowait())
                await asyncio.sleep(0.05)
            await self.settle()
            for inbox in inboxes:
                while not inbox.empty():
                    got.append(inbox.get_nowait())
            payloads = sorted((event.payload for event in got), key=int)
            assert payloads == [str(i).encode() for i in range(20)], f"each exactly once: {payloads}"
            assert all(event.position is None for event in got), "a broadcast=False event has no position"

        self.run(bus_factory, body, count=3)

    def test_order_and_names_are_kept(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            for i in range(50):
                await buses[0].publish(f"n{i % 3}", str(i).encode())
            received = [await self.receive(inboxes[-1]) for _ in range(50)]
            assert received == [(f"n{i % 3}", str(i).encode()) for i in range(50)]

        self.run(bus_factory, body, count=2)

    def test_each_publisher_in_order_once_and_numbered(self, bus_factory: Callable[[], EventBus]) -> None:
        """Two publishers at once: every server gets every event once, each publisher's in
        order, positioned as ``delivery.sequence`` says and as ``publish`` answered."""
        per_publisher = 30

        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            delivery = self.delivery_of(buses[0])
            sent: dict[bytes, Position | None] = {}

            async def publish_all(index: int) -> None:
                bus = buses[index % len(buses)]
                for i in range(per_publisher):
                    payload = f"{index}:{i}".encode()
                    sent[payload] = await bus.publish("seq", payload)

            await asyncio.gather(publish_all(0), publish_all(1))
            seen_at: dict[bytes, Position | None] = {}
            for inbox in inboxes:
                got = await self.collect(inbox, 2 * per_publisher)
                payloads = [event.payload for event in got]
                assert sorted(payloads) == sorted(sent), f"every event exactly once: {payloads}"
                for index in (0, 1):
                    mine = [p for p in payloads if p.startswith(f"{index}:".encode())]
                    assert mine == [f"{index}:{i}".encode() for i in range(per_publisher)], f"in order: {mine}"
                for event in got:
                    assert event.position is not None and event.position == sent[event.payload], (
                        f"{event.payload!r} arrived at {event.position}, publish answered {sent[event.payload]}"
                    )
                    assert seen_at.setdefault(event.payload, event.position) == event.position
                positions = [event.position for event in got if event.position is not None]
                streams: dict[str, list[int]] = {}
                for position in positions:
                    streams.setdefault(position.epoch, []).append(position.seq)
                if delivery.sequence == "bus":
                    assert len(streams) == 1, f"one stream, one epoch: {positions}"
                for seqs in streams.values():
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"numbered in order, no holes: {seqs}"

        self.run(bus_factory, body, count=2)

    def test_replay_answers_as_history_says(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            delivery = self.delivery_of(buses[0])
            sent = [
                await buses[0].publish("r", str(i).encode(), True, {"i": str(i)} if i == 3 else None) for i in range(5)
            ]
            positions = [p for p in sent if p is not None]
            assert len(positions) == 5
            await self.collect(inboxes[-1], 5)
            reader = buses[-1]
            if not delivery.history:
                replay = await reader.replay(positions[1])
                assert not replay.complete, "a bus without history says there may be a gap"
                return
            replay = await reader.replay(positions[1])
            assert replay.complete
            assert [(e.name, e.payload, e.position) for e in replay.events] == [
                ("r", str(i).encode(), positions[i]) for i in (2, 3, 4)
            ]
            assert replay.events[1].metadata == {"i": "3"} and replay.events[0].metadata is None
            paged = await reader.replay(positions[0], limit=2)
            assert [e.position for e in paged.events] == positions[1:3] and paged.complete
            caught_up = await reader.replay(positions[4])
            assert caught_up.complete and caught_up.events == []
            if delivery.sequence == "bus":
                assert await reader.position() == positions[4]
            stranger = await reader.replay(Position("an-epoch-this-bus-never-had", positions[1].seq))
            assert not stranger.complete, "another epoch's position: the stream started over since"

        self.run(bus_factory, body, count=2)

    def test_a_reconnect_keeps_the_promise(self, bus_factory: Callable[[], EventBus]) -> None:
        """One bus loses its connection (``interrupt``) while another publishes: afterwards it
        receives again, never an event twice, each publisher's in order, and, for an
        at-least-once bus, every event published meanwhile too."""

        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            publisher, receiver = buses[0], buses[-1]
            delivery = self.delivery_of(receiver)
            inbox = inboxes[-1]
            await publisher.publish("before", b"0")
            assert (await self.receive_event(inbox)).payload == b"0"
            await self.interrupt(receiver)
            published = [b"0"]
            for i in range(5):
                await publisher.publish("during", f"d{i}".encode())
                published.append(f"d{i}".encode())
            got = [b"0"]
            deadline = time.monotonic() + 4 * self.delivery_timeout
            after = 0
            while time.monotonic() < deadline:
                await publisher.publish("after", f"a{after}".encode())
                published.append(f"a{after}".encode())
                after += 1
                try:
                    event = await asyncio.wait_for(inbox.get(), 0.3)
                except asyncio.TimeoutError:
                    continue
                got.append(event.payload)
                if event.name == "after":
                    break
            else:
                raise AssertionError(f"the bus did not receive again after the reconnect: {got}")
            if delivery.guarantee == AT_LEAST_ONCE:
                deadline = time.monotonic() + self.delivery_timeout
                while len(got) < len(published) and time.monotonic() < deadline:
                    try:
                        got.append((await asyncio.wait_for(inbox.get(), 0.3)).payload)
                    except asyncio.TimeoutError:
                        continue
            await self.settle()
            while not inbox.empty():
                got.append(inbox.get_nowait().payload)
            assert len(got) == len(set(got)), f"an event arrived twice: {got}"
            assert got == [p for p in published if p in got], f"out of order: {got}"
            if delivery.guarantee == AT_LEAST_ONCE:
                assert got == published, f"an at-least-once bus lost events across a reconnect: {got}"

        self.run(bus_factory, body, count=2)

    def test_large_payload(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            payload = bytes(range(256)) * 4096  # 1 MiB
            await buses[-1].publish("big", payload)
            assert await self.receive(inboxes[0]) == ("big", payload)

        self.run(bus_factory, body, count=2)

    def test_metadata_travels_with_the_event(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            seen: asyncio.Queue[tuple[int, str, bytes, Any]] = asyncio.Queue()

            def recorder(index: int) -> Callable[..., None]:
                def record(name: str, payload: bytes, metadata: Any, position: Any = None) -> None:
                    seen.put_nowait((index, name, payload, metadata))

                return record

            for index, bus in enumerate(buses):
                bus.subscribe(recorder(index))
            traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            await buses[0].publish("traced", b"{}", True, {"traceparent": traceparent, "note": "ünï"})
            await buses[0].publish("plain", b"[]", True)
            await buses[-1].publish("one", b"1", False, {"traceparent": traceparent})
            got = [await asyncio.wait_for(seen.get(), self.delivery_timeout) for _ in range(2 * len(buses) + 1)]
            await self.settle()
            assert seen.empty(), "a broadcast=False event reached more than one bus"
            for index in range(len(buses)):
                mine = [(name, payload, metadata) for i, name, payload, metadata in got if i == index and name != "one"]
                assert mine == [("traced", b"{}", {"traceparent": traceparent, "note": "ünï"}), ("plain", b"[]", None)]
            assert [(name, metadata) for _, name, _, metadata in got if name == "one"] == [
                ("one", {"traceparent": traceparent})
            ]

        self.run(bus_factory, body, count=2)

    def test_ping_when_open(self, bus_factory: Callable[[], EventBus]) -> None:
        async def body(buses: list[EventBus], inboxes: list[Inbox]) -> None:
            assert await buses[0].ping() is True

        self.run(bus_factory, body, count=1)
