"""Async method for tests that need a call in flight for as long as they say: it creates the
file ``entered`` once running, then waits (at most ``timeout`` seconds) until the file
``release`` exists, and answers ``{"released": true}`` (false when the wait timed out)."""

import asyncio
import os
import time


async def invoke(handler, parameters):
    open(parameters["entered"], "w").close()
    deadline = time.monotonic() + float(parameters.get("timeout", 60))
    while not os.path.exists(parameters["release"]):
        if time.monotonic() > deadline:
            return {"released": False}
        await asyncio.sleep(0.02)
    return {"released": True}
