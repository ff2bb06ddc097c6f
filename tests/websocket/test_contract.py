"""The socket contract (``toto.testing.SocketContract``) on the face that serves WebSockets:
Tornado's. granian and uvicorn serve HTTP calls only (``use_web_sockets`` with them is a
startup error), so they have no socket half to pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.testing import ServerProcess, SocketContract


class TestTornadoSockets(SocketContract):
    @pytest.fixture
    def socket_face(self) -> Iterator[Callable[[dict[str, Any]], str]]:
        started: list[ServerProcess] = []

        def start(options: dict[str, Any]) -> str:
            server = ServerProcess({**options, "http": "tornado"})
            started.append(server.start())
            return server.url

        yield start
        for server in started:
            server.close()


def test_granian_and_uvicorn_serve_no_sockets() -> None:
    for http in ("granian", "uvicorn"):
        server = ServerProcess({"http": http, "use_web_sockets": True, "database": "memory"})
        with pytest.raises(RuntimeError) as refused:
            server.start()
        server.close()
        assert "use_web_sockets needs --http=tornado" in str(refused.value)
