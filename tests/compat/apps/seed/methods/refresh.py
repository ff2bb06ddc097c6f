"""Reads the state again after another request saved it (session.refresh())."""

from toto.invocation import *


@authenticated
async def invoke(handler, params):
    before = handler.session["counter"]
    await handler.session.refresh()
    return {"before": before, "after": handler.session["counter"]}
