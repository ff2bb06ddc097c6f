"""A bare RSGI application (granian's own interface) doing only the JSON work.

``granian --interface rsgi rsgi_echo:app`` (from bench/servers).
"""

from __future__ import annotations

from typing import Any

from echo_work import answer

HEADERS = [("content-type", "application/json")]


async def app(scope: Any, protocol: Any) -> None:
    protocol.response_bytes(200, HEADERS, answer(await protocol()))
