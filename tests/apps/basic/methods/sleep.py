"""Async method: sleeps, then answers how long."""

import asyncio


async def invoke(handler, parameters):
    seconds = float(parameters.get("seconds", 0.1))
    await asyncio.sleep(seconds)
    return {"slept": seconds}
