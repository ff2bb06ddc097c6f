"""Counts in steps (an async method with a msgspec.Struct)."""

import msgspec


class Step(msgspec.Struct):
    start: int
    by: int = 1
    times: int = 3


async def invoke(handler, parameters: Step) -> list[int]:
    times = max(0, min(parameters.times, 100))
    return [parameters.start + i * parameters.by for i in range(times)]
