"""Limits on the connection (issue 13): slow clients are cut after the timeouts, open
connections are capped, and an oversized head is answered 431/414 instead of a silent close."""

from __future__ import annotations

import json
import socket
import time

import pytest

# The bound within which a connection past its timeout must be gone: generous, for a loaded machine.
CUT_WITHIN = 15.0


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CUT_WITHIN)


def closed_by_server(sock: socket.socket, drip: bytes | None) -> bool:
    """Keep the connection busy the way a slow client does (one byte of ``drip`` at a time,
    or nothing) until the server closes it; False if it is still open after ``CUT_WITHIN``."""
    deadline = time.monotonic() + CUT_WITHIN
    sock.settimeout(0.3)
    while time.monotonic() < deadline:
        try:
            if drip:
                sock.sendall(drip[:1])
                drip = drip[1:] or drip
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def read_answer(sock: socket.socket) -> tuple[int, object]:
    """The status and the body of one answer: its JSON, or its bytes when it is not JSON."""
    data = b""
    sock.settimeout(CUT_WITHIN)
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    try:
        return int(head.split(b" ")[1]), json.loads(body)
    except ValueError:
        return int(head.split(b" ")[1]), body


def test_slow_loris_connections_are_cut_after_the_idle_timeout(start_server):
    srv = start_server(idle_timeout=1)
    slow = [connect(srv.port) for _ in range(40)]
    try:
        for sock in slow:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        held = [sock for sock in slow if not closed_by_server(sock, b"X-Slow-" * 100)]
        assert not held, f"{len(held)} of {len(slow)} slow-loris connections are still open"
    finally:
        for sock in slow:
            sock.close()
    assert srv.client().call("echo", {"alive": True}) == {"alive": True}


def test_an_idle_kept_alive_connection_is_closed(start_server):
    srv = start_server(idle_timeout=1)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock) == (200, {"result": {"a": "1"}})
        assert closed_by_server(sock, None), "a connection with no request is kept past idle_timeout"


def test_a_body_that_stops_coming_is_cut_after_the_body_timeout(start_server):
    srv = start_server(body_timeout=1)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        assert closed_by_server(sock, None), "a stalled body holds the connection past body_timeout"


def test_a_client_within_the_timeouts_is_served(start_server):
    """The timeouts cut only what is past them: a kept-alive connection whose next request
    comes a second later, and a body whose second half comes a second later, are served."""
    srv = start_server(idle_timeout=3, body_timeout=3)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock) == (200, {"result": {"a": "1"}})
        time.sleep(1)
        sock.sendall(b"GET /echo?a=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock) == (200, {"result": {"a": "2"}})
        body = json.dumps({"method": "echo", "parameters": {"a": 3}}).encode()
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        sock.sendall(head % len(body) + body[:10])
        time.sleep(1)
        sock.sendall(body[10:])
        assert read_answer(sock) == (200, {"result": {"a": 3}})


def test_the_default_timeouts_are_seconds_not_an_hour(start_server):
    srv = start_server()  # the defaults: idle_timeout 15 s
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        sock.settimeout(60)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 40


def test_connections_beyond_max_connections_get_503(start_server, http_transport):
    if http_transport == "granian":
        pytest.skip("granian queues connections beyond max_connections (toto.testing.transport checks it)")
    srv = start_server(max_connections=10)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + CUT_WITHIN
        while len(held) < 10:  # each answered once, then kept alive: ten open connections
            sock = connect(srv.port)
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            if read_answer(sock)[0] == 200:
                held.append(sock)
                continue
            sock.close()  # the start-up probe of ServerProcess may not be counted out yet
            assert time.monotonic() < deadline, f"only {len(held)} connections were served"
            time.sleep(0.1)
        with connect(srv.port) as extra:
            extra.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            status, body = read_answer(extra)
            assert status == 503
            assert body["error"]["code"] == 1013  # type: ignore[index]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + CUT_WITHIN
    while True:  # the server notices the closes in its own time
        try:
            assert srv.client().call("echo", {"ok": 1}) == {"ok": 1}
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /echo?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", 431),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n", 431),
    ],
)
def test_an_oversized_head_is_answered_431_or_414(server, head, status, http_transport):
    with connect(server.port) as sock:
        sock.sendall(head)
        answered, body = read_answer(sock)
    # granian answers a head it will not read with an empty body, before Toto sees it.
    assert answered == status
    if http_transport != "granian":
        assert body["error"]["code"] == 1011  # type: ignore[index]
    assert server.client().call("echo", {"alive": True}) == {"alive": True}


def test_a_head_at_the_limits_is_served(start_server):
    srv = start_server(max_header_size=8192, max_request_line=4096)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /echo?q=" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 4000 + b"\r\n\r\n")
        assert read_answer(sock) == (200, {"result": {"q": "a" * 3000}})
