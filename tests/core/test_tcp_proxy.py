"""The kit's TcpProxy slows a link on demand (``delay``), as the cluster suite's delay fault uses it,
and ``restore`` makes it fast again, connections already open included."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from toto.testing import TcpProxy


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def round_trip(conn: socket.socket) -> float:
    started = time.monotonic()
    conn.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    return time.monotonic() - started


def test_delay_holds_each_direction_and_restore_ends_it(echo: int) -> None:
    with TcpProxy("127.0.0.1", echo) as proxy, socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as conn:
        fast = round_trip(conn)
        proxy.delay(0.25)
        assert round_trip(conn) >= 0.5, "0.25 s each way"
        proxy.restore()
        assert round_trip(conn) < 0.45, f"restore forwards without the delay (before it: {fast:.3f} s)"
        with pytest.raises(ValueError):
            proxy.delay(-1)
