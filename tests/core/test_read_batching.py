"""toto.storage.batching.ReadBatcher: the reads of one event-loop turn become one fetch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from toto.exceptions import StorageUnavailable
from toto.storage.batching import ReadBatcher


def test_reads_of_one_turn_share_one_fetch_and_each_gets_its_own_value() -> None:
    fetches: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> list[str | None]:
        fetches.append(list(keys))
        await asyncio.sleep(0)
        return [key.upper() if key != "gone" else None for key in keys]

    async def main() -> list[str | None]:
        reads = ReadBatcher(fetch)
        first = await asyncio.gather(*(reads.read(key) for key in ["a", "b", "a", "gone"]))
        alone = await reads.read("c")
        return [*first, alone]

    assert asyncio.run(main()) == ["A", "B", "A", None, "C"]
    assert fetches == [["a", "b", "gone"], ["c"]], "one fetch per turn, each key asked once"


def test_a_failed_fetch_fails_every_read_of_its_batch_and_the_next_batch_is_fresh() -> None:
    calls = 0

    async def fetch(keys: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StorageUnavailable("down")
        return list(keys)

    async def main() -> tuple[list[BaseException | str], str]:
        reads = ReadBatcher(fetch)
        failed = await asyncio.gather(reads.read("x"), reads.read("y"), return_exceptions=True)
        return failed, await reads.read("z")

    failed, after = asyncio.run(main())
    assert all(isinstance(error, StorageUnavailable) for error in failed) and len(failed) == 2
    assert after == "z"


def test_a_cancelled_reader_does_not_disturb_the_others() -> None:
    async def fetch(keys: Sequence[str]) -> list[str]:
        await asyncio.sleep(0.01)
        return list(keys)

    async def main() -> str:
        reads = ReadBatcher(fetch)
        doomed = asyncio.ensure_future(reads.read("a"))
        kept = reads.read("b")
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await kept

    assert asyncio.run(main()) == "b"
