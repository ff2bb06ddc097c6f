"""Contract tests of the storage primitives that guard a whole deployment (see ``toto.storage``).

``StorageContract`` includes them; they are a class of their own so that a backend's
author can read in one place what ``increment``, ``first_seen`` and the version check
of ``save_state`` must do, alone and between two instances that share a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from toto.storage import SessionRecord, Storage


class GuardContract:
    """Needs what ``StorageContract`` gives: ``run``, ``session`` and ``shared``."""

    shared = True
    run: Callable[..., Any]
    session: Callable[..., SessionRecord]

    def _across(self) -> None:
        if not self.shared:
            import pytest

            pytest.skip("instances of this backend do not share data (one process only)")

    def test_increment_counts_from_zero(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert [await s.increment("guard:a", 60) for _ in range(3)] == [1, 2, 3]
            assert await s.increment("guard:a", 60, -1) == 2
            assert await s.increment("guard:a", 60, 0) == 2
            assert await s.increment("guard:b", 60) == 1, "counters are independent"
            assert await s.increment("guard:c", 60, 5) == 5

        self.run(storage_factory, body)

    def test_increment_window_is_fixed_and_expires(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.increment("guard:w", 1.0) == 1
            await asyncio.sleep(0.6)
            assert await s.increment("guard:w", 1.0) == 2, "a later increment must not restart the window"
            await asyncio.sleep(0.7)
            assert await s.increment("guard:w", 1.0) == 1, "an expired counter starts again from 0"

        self.run(storage_factory, body)

    def test_increment_is_atomic(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            values = await asyncio.gather(*(s.increment("guard:race", 60) for _ in range(100)))
            assert sorted(values) == list(range(1, 101))

        self.run(storage_factory, body)

    def test_increment_is_atomic_across_instances(self, storage_factory: Callable[[], Storage]) -> None:
        self._across()

        async def body(a: Storage, b: Storage) -> None:
            values = await asyncio.gather(*(((a, b)[i % 2]).increment("guard:twins", 60) for i in range(100)))
            assert sorted(values) == list(range(1, 101)), "each increment must see every other one"

        self.run(storage_factory, body, count=2)

    def test_first_seen_once(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.first_seen("seen:x", 60) is True
            assert await s.first_seen("seen:x", 60) is False
            assert await s.first_seen("seen:y", 60) is True
            answers = await asyncio.gather(*(s.first_seen("seen:z", 60) for _ in range(50)))
            assert answers.count(True) == 1

        self.run(storage_factory, body)

    def test_first_seen_expires(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            assert await s.first_seen("seen:short", 1.0) is True
            assert await s.first_seen("seen:short", 1.0) is False
            await asyncio.sleep(1.3)
            assert await s.first_seen("seen:short", 1.0) is True, "a mark lives ttl seconds, then is gone"

        self.run(storage_factory, body)

    def test_first_seen_once_across_instances(self, storage_factory: Callable[[], Storage]) -> None:
        self._across()

        async def body(a: Storage, b: Storage) -> None:
            for round_ in range(5):
                key = f"seen:twins{round_}"
                answers = await asyncio.gather(*(((a, b)[i % 2]).first_seen(key, 60) for i in range(20)))
                assert answers.count(True) == 1, f"round {round_}: {answers}"

        self.run(storage_factory, body, count=2)

    def test_save_state_checks_the_version(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("ver"))
            loaded = await s.load_session("ver")
            assert loaded is not None
            start = loaded.version
            assert await s.save_state("ver", b"one", start) == start + 1
            assert await s.save_state("ver", b"stale", start) is None, "a save from an old version must fail"
            loaded = await s.load_session("ver")
            assert loaded is not None and (loaded.state, loaded.version) == (b"one", start + 1)
            assert await s.save_state("ver", b"two") == start + 2, "without a version the save always writes"
            assert await s.save_state("ver", b"three", start + 2) == start + 3
            loaded = await s.load_session("ver")
            assert loaded is not None and (loaded.state, loaded.version) == (b"three", start + 3)
            assert await s.save_state("gone", b"x", 0) is None
            assert await s.save_state("gone", b"x") is None
            assert await s.load_session("gone") is None

        self.run(storage_factory, body)

    def test_touch_keeps_the_version(self, storage_factory: Callable[[], Storage]) -> None:
        async def body(s: Storage) -> None:
            await s.store_session(self.session("vt"))
            version = await s.save_state("vt", b"s")
            assert version is not None
            await s.touch_session("vt", self.session("x", ttl=7200).expires)
            loaded = await s.load_session("vt")
            assert loaded is not None and loaded.version == version and loaded.state == b"s"

        self.run(storage_factory, body)

    def test_one_of_racing_saves_wins_across_instances(self, storage_factory: Callable[[], Storage]) -> None:
        self._across()

        async def body(a: Storage, b: Storage) -> None:
            await a.store_session(self.session("contended"))
            loaded = await b.load_session("contended")
            assert loaded is not None
            saves: list[Awaitable[int | None]] = [
                ((a, b)[i % 2]).save_state("contended", f"w{i}".encode(), loaded.version) for i in range(20)
            ]
            results = await asyncio.gather(*saves)
            winners = [i for i, r in enumerate(results) if r is not None]
            assert len(winners) == 1, results
            final = await a.load_session("contended")
            assert final is not None
            assert final.state == f"w{winners[0]}".encode() and final.version == loaded.version + 1

        self.run(storage_factory, body, count=2)
