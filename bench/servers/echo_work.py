"""The JSON work every bare server and peer does, so that rows differ only in the server.

Parse the body, build ``{"result": parameters}``, serialize it compact and ASCII-only
as Toto does, with the stdlib's json (what each peer uses by default).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
encode = _encoder.encode


def answer(body: bytes) -> bytes:
    request: Any = json.loads(body)
    return _encoder.encode({"result": request.get("parameters", {})}).encode("ascii")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """``uvloop`` or ``asyncio``: the benchmark runs every server on the loop Toto runs on."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
