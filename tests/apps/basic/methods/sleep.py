"""Async method: sleeps ``seconds``, then answers how long. A test that must act while the
call is in flight passes file paths: ``started`` is created when the call begins, and the
call ends as soon as ``until`` exists (still at most ``seconds``)."""

import asyncio
import time
from pathlib import Path


async def invoke(handler, parameters):
    seconds = float(parameters.get("seconds", 0.1))
    if parameters.get("started"):
        Path(parameters["started"]).touch()
    until = parameters.get("until")
    if not until:
        await asyncio.sleep(seconds)
        return {"slept": seconds}
    deadline = time.monotonic() + seconds
    while not Path(until).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return {"slept": seconds, "released": Path(until).exists()}
