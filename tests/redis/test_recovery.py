"""EventManager.recover on the Redis bus, in one process: what a socket's resubscription
reads from the history, page after page, within its cap (tests/websocket/test_recovery.py
runs it over real sockets)."""

from __future__ import annotations

import asyncio

from toto.eventbus import Position
from toto.events import RECOVERY_PAGE, EventManager
from toto.serializers import JsonSerializer
from toto_redis import RedisEventBus


def test_recover_reads_page_after_page_and_stops_at_its_cap(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        manager = EventManager()
        await manager.start(RedisEventBus(redis_url, prefix + "events:"), JsonSerializer())
        try:
            first = await manager.send("wanted", -1)
            assert first is not None
            total = RECOVERY_PAGE * 2 + 30  # three pages
            for n in range(total):
                await manager.send("wanted" if n % 2 else "other", n)
            for _ in range(1000):  # until this server heard them all
                if manager.last_position is not None and manager.last_position.seq == first.seq + total:
                    break
                await asyncio.sleep(0.01)
            until = manager.last_position
            assert until is not None and until.seq == first.seq + total

            whole = await manager.recover(first, ["wanted"], 1000, until)
            assert whole.complete is True
            assert [args for _, args, _ in whole.events] == list(range(1, total, 2))
            assert [p.seq for _, _, p in whole.events] == [first.seq + 1 + n for n in range(1, total, 2)]
            assert whole.position == until

            capped = await manager.recover(first, ["wanted"], 50, until)
            assert capped.complete is False  # more than 50 stand between since and the live events
            assert [args for _, args, _ in capped.events] == list(range(1, 50, 2))
            assert capped.position == Position(first.epoch, first.seq + 50)

            # Nothing after since reached this server: nothing to read, nothing lost.
            assert (await manager.recover(until, ["wanted"], 1000, until)).complete is True
            # A position of another epoch, or older than the stream: a gap.
            assert (await manager.recover(Position("gone", 3), ["wanted"], 1000, until)).complete is False
            assert (await manager.recover(first, ["wanted"], 0, until)).complete is False  # recovery off
        finally:
            await manager.stop()

    asyncio.run(scenario())
