"""FastAPI as a peer, served by uvicorn: ``uvicorn fastapi_echo:app`` (from bench/servers).

The fastest way FastAPI's own documentation offers for a JSON body: the raw
``Request`` (no pydantic model to validate) and a ``JSONResponse``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/")
async def echo(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse({"result": data.get("parameters", {})})
