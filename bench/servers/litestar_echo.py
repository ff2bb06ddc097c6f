"""Litestar as a peer, served by uvicorn: ``uvicorn litestar_echo:app`` (from bench/servers).

Like the FastAPI row: the raw ``Request.json()`` and a plain dict as the answer. Litestar
reads and writes JSON with msgspec, which is what its users get by default (as the other
peers' users get the stdlib's json).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, post


@post("/", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
    data = await request.json()
    return {"result": data.get("parameters", {})}


app = Litestar([echo], openapi_config=None)
