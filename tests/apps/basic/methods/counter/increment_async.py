"""The async twin of counter.increment: awaits save_state()."""

import asyncio

from toto.invocation import authenticated


@authenticated
async def invoke(handler, parameters):
    session = handler.session
    value = session.get("count", 0) + 1
    await asyncio.sleep(0)
    session["count"] = value
    await session.save_state()
    return value
