"""Broadcasts ``{"p": publisher, "s": seq}`` as event ``feed``; answers once the bus took it."""

from __future__ import annotations

from typing import Any

from toto.events import EventManager
from toto.invocation import authenticated


@authenticated
async def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    position = await EventManager.instance().send("feed", {"p": str(parameters["p"]), "s": int(parameters["s"])})
    return {"seq": position.seq if position is not None else None}
