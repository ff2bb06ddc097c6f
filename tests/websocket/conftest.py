"""Helpers of the WebSocket tests: servers with sockets on, and a raw socket for hand-built frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST

T = TypeVar("T")
SOCKETS_APP = str(Path(__file__).parent.parent / "apps" / "sockets")
ON = {"use_web_sockets": True, "database": "memory", "socket_events": "*"}
#: Generous: how long a test waits for something that must happen (the machine may be busy).
PATIENCE = 30.0


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(_with_timeout(coro))


async def _with_timeout(coro: Awaitable[T]) -> T:
    return await asyncio.wait_for(coro, 120)


@pytest.fixture
def socket_server() -> Iterator[Callable[..., ServerProcess]]:
    """``socket_server(cwd=BASIC_APP, **options)``: a server with ``use_web_sockets`` on."""
    started: list[ServerProcess] = []

    def start(cwd: str = BASIC_APP, args: list[str] | None = None, **options: Any) -> ServerProcess:
        server = ServerProcess({**FAST, **ON, **options}, cwd=cwd, args=args)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.close()


def ws_url(server: ServerProcess, path: str = "/websocket") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_socket(
    server: ServerProcess, path: str = "/websocket", headers: dict[str, str] | None = None, **kw: Any
) -> WebSocketClientConnection:
    """Tornado's own websocket client: frames exactly as the test writes them."""
    return await websocket_connect(HTTPRequest(ws_url(server, path), headers=headers or {}), **kw)


async def answer(conn: WebSocketClientConnection, timeout: float = PATIENCE) -> Any:
    """The next message, decoded (None once the socket closed)."""
    frame = await asyncio.wait_for(conn.read_message(), timeout)
    if frame is None:
        return None
    if isinstance(frame, bytes):
        import msgpack

        return msgpack.unpackb(frame)
    return json.loads(frame)


async def closed(conn: WebSocketClientConnection, timeout: float = PATIENCE) -> tuple[int | None, str | None]:
    """Read until the server closes; its close code and reason."""
    while await asyncio.wait_for(conn.read_message(), timeout) is not None:
        pass
    return conn.close_code, conn.close_reason
