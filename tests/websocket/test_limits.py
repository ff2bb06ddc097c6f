"""Limits and faults of sockets: message size, ping timeout, sockets per process, calls per
socket, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import pytest

from tests.websocket.conftest import PATIENCE, answer, closed, raw_socket, run


def test_a_message_over_socket_max_message_closes_1009(socket_server) -> None:
    server = socket_server(socket_max_message=10_000)

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(json.dumps({"id": 1, "method": "echo", "parameters": {"x": "y" * 9000}}))
        assert (await answer(conn))["id"] == 1  # below the limit
        conn.write_message(json.dumps({"id": 2, "method": "echo", "parameters": {"x": "y" * 20_000}}))
        assert (await closed(conn))[0] == 1009

    run(scenario())
    assert "Traceback" not in server.output()


def test_sockets_beyond_the_cap_are_closed_1013(socket_server) -> None:
    server = socket_server(socket_max_sockets=2)

    async def scenario() -> None:
        first, second = await raw_socket(server), await raw_socket(server)
        third = await raw_socket(server)
        code, reason = await closed(third)
        assert code == 1013 and "too many sockets" in (reason or "")
        for conn in (first, second):
            conn.write_message(json.dumps({"id": 1, "method": "echo", "parameters": {}}))
            assert await answer(conn) == {"id": 1, "result": {}}
        first.close()
        for _ in range(200):  # its slot is free once the server saw it close
            again = await raw_socket(server)
            again.write_message(json.dumps({"id": 2, "method": "echo", "parameters": {}}))
            got = await answer(again)
            if got is not None:
                assert got == {"id": 2, "result": {}}
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the freed slot was never given again")

    run(scenario())


def test_calls_beyond_socket_max_calls_answer_1013_at_once(socket_server) -> None:
    server = socket_server(socket_max_calls=3)

    async def scenario() -> None:
        conn = await raw_socket(server)
        for n in range(3):
            conn.write_message(json.dumps({"id": n, "method": "sleep", "parameters": {"seconds": 2}}))
        conn.write_message(json.dumps({"id": "over", "method": "echo", "parameters": {}}))
        got = await answer(conn)
        assert got["id"] == "over" and got["error"]["code"] == 1013
        assert sorted([(await answer(conn))["id"] for _ in range(3)]) == [0, 1, 2]
        conn.write_message(json.dumps({"id": "after", "method": "echo", "parameters": {}}))
        assert await answer(conn) == {"id": "after", "result": {}}
        conn.close()

    run(scenario())


def _silent_socket(port: int) -> socket.socket:
    """A WebSocket handshake by hand, then silence: never a pong, never a read."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


def test_a_socket_that_never_pongs_is_closed(socket_server) -> None:
    server = socket_server(socket_ping_interval=0.2, socket_ping_timeout=0.2)

    async def scenario() -> None:
        live = await raw_socket(server)  # Tornado's client answers pings
        silent = _silent_socket(server.port)
        loop = asyncio.get_running_loop()

        def read_to_end() -> bytes:
            data = b""
            while chunk := silent.recv(65536):
                data += chunk
            return data

        data = await loop.run_in_executor(None, read_to_end)  # ends when the server drops it
        silent.close()
        assert b"\x89" in data  # it was pinged
        live.write_message(json.dumps({"id": 1, "method": "echo", "parameters": {}}))
        assert await answer(live) == {"id": 1, "result": {}}  # the answering socket lived on
        live.close()

    run(scenario())


def test_sigterm_finishes_calls_then_closes_going_away(socket_server) -> None:
    server = socket_server(drain_timeout=20)

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(json.dumps({"id": "busy", "method": "sleep", "parameters": {"seconds": 1}}))
        conn.write_message(json.dumps({"id": "quick", "method": "echo", "parameters": {}}))
        assert await answer(conn) == {"id": "quick", "result": {}}  # the sleep is running now
        assert server.proc is not None
        server.proc.terminate()
        assert await answer(conn) == {"id": "busy", "result": {"slept": 1.0}}
        assert await closed(conn) == (1001, "server going away")

    run(scenario())
    assert server.proc is not None and server.proc.wait(PATIENCE) == 0
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1"])
def test_origins_follow_allow_origin(socket_server, origin: str) -> None:
    server = socket_server(allow_origin="http://good.example")

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"Origin": "http://good.example"})
        conn.close()
        with pytest.raises(Exception) as refused:
            await raw_socket(server, headers={"Origin": origin})
        assert "403" in str(refused.value)

    run(scenario())


def test_a_refused_upgrade_leaves_the_connection_under_the_idle_timeout(socket_server) -> None:
    """A GET of the socket path that is not an upgrade is refused (400) on a connection that
    stays open for more requests; it is then idle like any other, and cut after idle_timeout,
    while a socket that did upgrade outlives that timeout."""
    import time

    server = socket_server(idle_timeout=1)

    async def upgraded_socket_outlives_the_idle_timeout() -> None:
        conn = await raw_socket(server)
        await asyncio.sleep(3)
        conn.write_message(json.dumps({"method": "echo", "parameters": {"still": "here"}, "id": 1}))
        reply = await answer(conn)
        assert reply["result"] == {"still": "here"}, reply
        conn.close()

    run(upgraded_socket_outlives_the_idle_timeout())
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"GET /websocket HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(15)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 400"), first[:100]
        sock.settimeout(0.5)
        deadline = time.monotonic() + 15
        cut = False
        while time.monotonic() < deadline and not cut:
            try:
                cut = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except ConnectionResetError:
                cut = True
        assert cut, "a connection idle after a refused upgrade is kept past idle_timeout"
