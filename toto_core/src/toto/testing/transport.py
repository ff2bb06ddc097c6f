"""The transport contract: what every HTTP face of a server does with clients that misbehave.

Each test starts a real server and talks to it over raw sockets, knowing only its address,
its process (for memory) and the options it was started with:

- slow clients: silent connections and heads that dribble are cut once ``idle_timeout``
  has passed (never before), a kept-alive connection with no next request too, and bodies
  that stall or dribble once ``body_timeout`` has passed;
- endless input: a head that never ends and a chunked body that never ends are stopped
  at their limits, and the server's memory grows by at most ``MEMORY_BOUND``;
- bodies that did not arrive whole (cut off, a malformed chunk line, a chunk size that
  overflows) never run: a method with a side effect leaves no mark, the server's count of
  requests in flight returns to 0, and a graceful stop after many aborted uploads is not
  held up;
- ``max_connections``: the connection beyond it is refused with 503 (1013), and
  connections are served again once others close;
- what is refused is answered in the protocol's shape (``{"error": {"code", "value"}}``
  with the right status), except what the transport documents its HTTP library answers
  before the server sees the request (``library_answers``).

Subclass and name the transport (``http``, the ``--http`` option), and what it cannot do
the protocol's way, as its documentation says::

    from toto.testing.transport import TransportContract

    class TestMyTransport(TransportContract):
        http = "mine"
        library_answers = frozenset({"malformed"})

A transport started some other way overrides ``start(**options)``: it returns a started
``ServerProcess`` (or anything with ``port``, ``pid``, ``stop(timeout)`` and ``close()``)
serving ``toto.testing.methods`` with those options. Measuring memory
needs ``psutil`` (``pip install 'toto-core[testing]'``).
"""

from __future__ import annotations

import json
import select
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from toto.testing.server import ServerProcess

#: The timeouts of the servers the contract starts (``idle_timeout``, ``body_timeout``).
TIMEOUT = 2.0
#: How long past a timeout a connection may still be open, and how long the server may take
#: to do what a test waits for: generous, for a loaded machine.
CUT_WITHIN = 20.0
#: A cut may be this much earlier than the timeout by the clocks' grain, and no more.
GRAIN = 0.05
#: ``max_header_size``, ``max_request_line``, ``max_body_size`` of the servers.
HEAD_LIMIT = 8192
LINE_LIMIT = 4096
BODY_LIMIT = 64 * 1024
#: ``max_connections`` of the server of the connection-cap test.
MAX_CONNECTIONS = 4
#: Silent and dribbling connections opened at once.
SLOW_CLIENTS = 10
#: Uploads cut off at once in the aborted-upload test.
ABORTED_UPLOADS = 20
#: The most an endless head or body sends before the test gives up on the server stopping it.
SEND_LIMIT = 64 * 1024 * 1024
#: The most the server's resident memory may grow while a client sends without end.
MEMORY_BOUND = 16 * 1024 * 1024
#: A graceful stop (SIGTERM) must end within this (the servers' drain_timeout is longer).
STOP_WITHIN = 20.0
#: How long a connection beyond ``max_connections`` is watched to see it is not served,
#: on a transport that queues it (``queues_beyond_max_connections``).
QUEUE_WATCH = 2.0
#: What every server of the contract is started with.
OPTIONS: dict[str, Any] = {
    "method_module": "toto.testing.methods",
    "database": "memory",
    "logging": "warning",
    "idle_timeout": TIMEOUT,
    "body_timeout": TIMEOUT,
    "max_header_size": HEAD_LIMIT,
    "max_request_line": LINE_LIMIT,
    "max_body_size": BODY_LIMIT,
    # Longer than STOP_WITHIN: a stop held up by a request that never ends shows.
    "drain_timeout": 3 * STOP_WITHIN,
}
FORM = "application/x-www-form-urlencoded"


def form_head(path: str, content_length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {content_length}\r\n\r\n".encode()
    )


def filled_head(size: int) -> bytes:
    """A whole GET head with about ``size`` bytes of header lines."""
    lines = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"f" * 1000) for i in range(size // 1000))
    return b"GET /in_flight HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"


def chunked_head(path: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()


class TransportContract:
    """The tests every HTTP transport passes (see the module's docstring)."""

    #: The ``--http`` of the servers (None: ``ServerProcess``'s default).
    http: ClassVar[str | None] = None
    #: Refusals the transport's HTTP library answers itself, before the server sees the
    #: request, so not in the protocol's shape (the status is still checked): "malformed"
    #: (a request it cannot parse), "head" (a head over the library's own read limit).
    library_answers: ClassVar[frozenset[str]] = frozenset()
    #: Connections beyond ``max_connections`` wait unanswered to be accepted (served once
    #: others close) instead of being answered 503.
    queues_beyond_max_connections: ClassVar[bool] = False

    @classmethod
    def start(cls, **options: Any) -> ServerProcess:
        """A started server of ``toto.testing.methods`` with ``OPTIONS`` and ``options``."""
        chosen = {**OPTIONS, **options}
        if cls.http is not None:
            chosen["http"] = cls.http
        return ServerProcess(chosen).start()

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls) -> Iterator[ServerProcess]:
        """A server with ``OPTIONS``, shared by the tests of a class that leave it as they found it."""
        server = cls.start()
        yield server
        server.close()

    @pytest.fixture
    def serve(self) -> Iterator[Callable[..., ServerProcess]]:
        """``serve(**options)``: a server of its own for a test (``start``), stopped after it."""
        started: list[ServerProcess] = []

        def start(**options: Any) -> ServerProcess:
            started.append(self.start(**options))
            return started[-1]

        yield start
        for server in started:
            server.close()

    # -- slow clients --------------------------------------------------------------------------

    def test_silent_connections_are_cut_after_the_idle_timeout(self, server: ServerProcess) -> None:
        began = time.monotonic()
        clients = [connect(server) for _ in range(SLOW_CLIENTS)]
        try:
            self.check_cut(watch_until_closed(clients, None), began, TIMEOUT, "silent connections", {408})
        finally:
            close_all(clients)
        assert_serves(server)

    def test_dribbling_heads_are_cut_after_the_idle_timeout(self, server: ServerProcess) -> None:
        began = time.monotonic()
        clients = [connect(server) for _ in range(SLOW_CLIENTS)]
        try:
            for client in clients:
                client.sendall(b"POST /marks/add HTTP/1.1\r\nHost: x\r\n")
            cut = watch_until_closed(clients, b"X-Slow: y\r\n")
            self.check_cut(cut, began, TIMEOUT, "heads sent a byte at a time", {408, 431})
        finally:
            close_all(clients)
        assert_serves(server)

    def test_an_idle_kept_alive_connection_is_cut_after_the_idle_timeout(self, server: ServerProcess) -> None:
        with connect(server) as client:
            client.sendall(b"GET /in_flight HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _ = read_answer(client)
            assert status == 200
            answered = time.monotonic()
            self.check_cut(
                watch_until_closed([client], None), answered, TIMEOUT, "an idle kept-alive connection", {408}
            )

    @pytest.mark.parametrize("drip", [None, b"a"], ids=["stalled", "dribbling"])
    def test_a_slow_body_is_cut_after_the_body_timeout(self, server: ServerProcess, drip: bytes | None) -> None:
        token = fresh_token()
        body = f"token={token}&to=ali&pad=".encode()
        began = time.monotonic()
        with connect(server) as client:
            client.sendall(form_head("/marks/add", content_length=4000) + body)
            cut = watch_until_closed([client], drip)
            self.check_cut(cut, began, TIMEOUT, "a body that does not come", {408})
        assert not seen(server, token), "a body that never came whole ran"

    def check_cut(
        self, cut: list[tuple[float | None, bytes]], began: float, timeout: float, what: str, statuses: set[int]
    ) -> None:
        """Every connection was closed, none before ``timeout`` from ``began``; what the server
        said before closing, if anything, is an answer of ``statuses`` in the protocol's shape."""
        held = [i for i, (at, _) in enumerate(cut) if at is None]
        assert not held, f"{len(held)} of {len(cut)} {what} still open {CUT_WITHIN:g}s past the {timeout:g}s timeout"
        early = [round(at - began, 2) for at, _ in cut if at is not None and at - began < timeout - GRAIN]
        assert not early, f"{what} cut before the {timeout:g}s timeout, after {early}s"
        for _, said in cut:
            if said:
                assert_shaped(said, statuses)

    # -- endless input ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("start", "piece"),
        [
            (b"GET /in_flight HTTP/1.1\r\nHost: x\r\n", b"X-Fill: " + b"v" * 1000 + b"\r\n"),
            (b"GET /in_flight HTTP/1.1\r\nHost: x\r\nX-Fill: ", b"v" * 4096),
            (b"GET /in_flight?q=", b"a" * 4096),
        ],
        ids=["header-lines", "header-value", "request-target"],
    )
    def test_an_endless_head_is_stopped_with_bounded_memory(
        self, serve: Callable[..., ServerProcess], start: bytes, piece: bytes
    ) -> None:
        server = serve()
        memory = ServerMemory(server)
        with connect(server) as client:
            said = send_without_end(client, start, piece, memory)
        assert memory.growth() <= MEMORY_BOUND, f"an endless head grew the server by {memory.growth() >> 20} MiB"
        if said:
            assert_shaped(said, {400, 414, 431}, library="head" in self.library_answers)
        assert_serves(server)

    def test_an_endless_chunked_body_is_stopped_with_bounded_memory(self, serve: Callable[..., ServerProcess]) -> None:
        server = serve()
        memory = ServerMemory(server)
        token = fresh_token()
        chunk = b"%x\r\n" % 16384 + b"p" * 16384 + b"\r\n"
        first = f"token={token}&pad=".encode()
        with connect(server) as client:
            said = send_without_end(
                client, chunked_head("/marks/add") + b"%x\r\n" % len(first) + first + b"\r\n", chunk, memory
            )
        assert memory.growth() <= MEMORY_BOUND, f"an endless body grew the server by {memory.growth() >> 20} MiB"
        if said:
            assert_shaped(said, {413})
        assert not seen(server, token)
        assert_serves(server)

    # -- bodies that did not arrive whole -----------------------------------------------------------

    @pytest.mark.parametrize(
        ("chunked", "rest", "ending"),
        [
            (True, b"", "close"),
            (True, b"", "half-close"),
            (True, b"zz\r\n&to=ali\r\n0\r\n\r\n", "keep"),
            (True, b"FFFFFFFFFFFFFFFFFFFFFF\r\n&to=ali\r\n0\r\n\r\n", "keep"),
            (False, b"", "close"),
            (False, b"", "half-close"),
        ],
        ids=[
            "chunked-cut-then-closed",
            "chunked-cut-then-half-closed",
            "malformed-chunk-line",
            "overflowing-chunk-size",
            "sized-cut-then-closed",
            "sized-cut-then-half-closed",
        ],
    )
    def test_a_body_that_did_not_arrive_whole_never_runs(
        self, server: ServerProcess, chunked: bool, rest: bytes, ending: str
    ) -> None:
        token = fresh_token()
        part = f"token={token}&to=ali".encode()
        if chunked:
            sent = chunked_head("/marks/add") + b"%x\r\n" % len(part) + part + b"\r\n"
        else:
            sent = form_head("/marks/add", content_length=4000) + part
        client = connect(server)
        try:
            client.sendall(sent)
            if not rest:  # cut off: only once the server is reading it, so it cannot run later
                wait_for(lambda: in_flight(server) >= 1, "the server begins the request")
            else:
                client.sendall(rest)
            if ending == "close":
                client.close()
            else:
                if ending == "half-close":
                    client.shutdown(socket.SHUT_WR)
                ((_, said),) = watch_until_closed([client], None)
                if said:
                    assert_shaped(said, {400}, library="malformed" in self.library_answers)
        finally:
            client.close()
        wait_for(lambda: in_flight(server) == 0, "the broken request ends")
        assert not seen(server, token), "a body that did not arrive whole ran as if complete"
        assert_serves(server)

    def test_aborted_uploads_end_and_do_not_hold_a_graceful_stop(self, serve: Callable[..., ServerProcess]) -> None:
        server = serve()
        tokens = [fresh_token() for _ in range(ABORTED_UPLOADS)]
        clients = [connect(server) for _ in tokens]
        try:
            for client, token in zip(clients, tokens):  # 500 of 4,000 announced bytes
                client.sendall(
                    form_head("/marks/add", content_length=4000) + f"token={token}&pad=".encode().ljust(500, b"p")
                )
            wait_for(lambda: in_flight(server) == ABORTED_UPLOADS, "the server reads every upload")
        finally:
            close_all(clients)
        wait_for(lambda: in_flight(server) == 0, "the aborted uploads end")
        ran = [token for token in tokens if seen(server, token)]
        assert not ran, f"{len(ran)} aborted uploads ran"
        assert_stops_in_time(server, f"{ABORTED_UPLOADS} aborted uploads")
        assert "Traceback" not in server.output(), server.output()[-3000:]

    def test_calls_whose_client_left_end_quietly(self, serve: Callable[..., ServerProcess]) -> None:
        """A call waiting for an answer that never comes ends when its client goes away: no
        traceback in the log, nothing in flight, no graceful stop held up."""
        server = serve()
        clients = [connect(server) for _ in range(SLOW_CLIENTS)]
        try:
            for client in clients:
                client.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: in_flight(server) == SLOW_CLIENTS, "the server runs every call")
        finally:
            close_all(clients)
        wait_for(lambda: in_flight(server) == 0, "the calls end")
        assert_stops_in_time(server, f"{SLOW_CLIENTS} calls whose client left")
        assert "Traceback" not in server.output(), server.output()[-3000:]

    # -- connections ------------------------------------------------------------------------------

    def test_connections_beyond_max_connections_are_refused_until_others_close(
        self, serve: Callable[..., ServerProcess]
    ) -> None:
        # Held connections stay open meanwhile: they are not cut for being idle.
        server = serve(max_connections=MAX_CONNECTIONS, idle_timeout=3 * CUT_WITHIN)
        held: list[socket.socket] = []
        request = b"GET /in_flight HTTP/1.1\r\nHost: x\r\n\r\n"
        try:
            deadline = time.monotonic() + CUT_WITHIN
            while len(held) < MAX_CONNECTIONS:  # each answered once, then kept alive
                client = connect(server)
                client.sendall(request)
                status, _ = read_answer(client)
                if status == 200:
                    held.append(client)
                    continue
                client.close()  # a start-up probe of the server may not be counted out yet
                assert time.monotonic() < deadline, f"only {len(held)} of {MAX_CONNECTIONS} connections were served"
                time.sleep(0.1)
            extra = connect(server)
            try:
                extra.sendall(request)
                if self.queues_beyond_max_connections:
                    assert not answered_within(extra, QUEUE_WATCH), "a connection beyond max_connections was served"
                    held.pop().close()
                    status, _ = read_answer(extra)
                    assert status == 200, "the queued connection is served once another closes"
                else:
                    ((_, said),) = watch_until_closed([extra], None)
                    assert said, "a connection beyond max_connections was closed without an answer"
                    assert_shaped(said, {503}, code=1013)
            finally:
                extra.close()
        finally:
            close_all(held)
        assert_serves(server)

    # -- refusals in the protocol's shape ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("sent", "status", "case"),
        [
            (b"GET /in_flight HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (2 * HEAD_LIMIT) + b"\r\n\r\n", 431, ""),
            # Past what a server reads of a head at all (four times max_header_size), sent whole.
            (filled_head(5 * HEAD_LIMIT), 431, "head"),
            (b"GET /in_flight?q=" + b"a" * (2 * LINE_LIMIT) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, ""),
            (form_head("/marks/add", content_length=2 * BODY_LIMIT), 413, ""),
            (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed"),
            (b"GET /in_flight HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400, "malformed"),
        ],
        ids=[
            "head-over-max_header_size",
            "head-over-read-limit",
            "target-over-max_request_line",
            "body-over-max_body_size",
            "bad-request-line",
            "bad-header-line",
        ],
    )
    def test_a_refused_request_is_answered_in_the_protocols_shape(
        self, server: ServerProcess, sent: bytes, status: int, case: str
    ) -> None:
        with connect(server) as client:
            client.sendall(sent)
            ((_, said),) = watch_until_closed([client], None)
        assert said, f"a request refused {status} was closed without an answer"
        assert_shaped(said, {status}, library=case in self.library_answers)
        assert_serves(server)


# -- what the tests use ------------------------------------------------------------------------------


class ServerMemory:
    """The resident memory of a server's process: ``sample()`` while a test pushes at it,
    ``growth()`` the most it grew above where it was when this was made (after a first call)."""

    def __init__(self, server: ServerProcess) -> None:
        import psutil

        assert_serves(server)  # everything a request needs is loaded before the baseline
        self.process = psutil.Process(server.pid)
        self.baseline = self.peak = self.process.memory_info().rss

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)

    def growth(self) -> int:
        self.sample()
        return self.peak - self.baseline


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CUT_WITHIN)


def close_all(clients: list[socket.socket]) -> None:
    for client in clients:
        client.close()


def fresh_token() -> str:
    return uuid.uuid4().hex


def call(server: ServerProcess, method: str, **parameters: str) -> Any:
    """A GET call on its own connection; its result."""
    query = "&".join(f"{name}={value}" for name, value in parameters.items())
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/{method}?{query}", timeout=CUT_WITHIN) as answer:
        return json.loads(answer.read())["result"]


def in_flight(server: ServerProcess) -> int:
    return int(call(server, "in_flight")["in_flight"])


def seen(server: ServerProcess, token: str) -> bool:
    return bool(call(server, "marks/seen", token=token)["seen"])


def assert_serves(server: ServerProcess) -> None:
    """The server still answers a call (within CUT_WITHIN: it may be closing what a test left)."""
    wait_for(lambda: in_flight(server) >= 0, "the server answers a call")


def assert_stops_in_time(server: ServerProcess, after: str) -> None:
    """A graceful stop (SIGTERM) ends within ``STOP_WITHIN``, before the drain would give up."""
    began = time.monotonic()
    code = server.stop(STOP_WITHIN)
    assert code != -signal.SIGKILL, f"a graceful stop was still held up {time.monotonic() - began:.0f}s after {after}"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CUT_WITHIN
    while True:
        try:
            if condition():
                return
        except OSError:
            pass  # the server may refuse while it closes what a test left open
        assert time.monotonic() < deadline, f"waited {CUT_WITHIN:g}s for {what}"
        time.sleep(0.05)


def watch_until_closed(clients: list[socket.socket], drip: bytes | None) -> list[tuple[float | None, bytes]]:
    """Keep ``clients`` open (sending ``drip`` a byte a turn to each, a quarter of a second
    apart, when given) until the server closes each or ``CUT_WITHIN`` passes. For each: when
    it was closed (None: still open) and what the server sent before closing."""
    said = [b""] * len(clients)
    closed: list[float | None] = [None] * len(clients)
    offset = 0
    deadline = time.monotonic() + TIMEOUT + CUT_WITHIN
    while time.monotonic() < deadline and None in closed:
        open_ = [i for i, at in enumerate(closed) if at is None]
        if drip:
            byte = drip[offset % len(drip) : offset % len(drip) + 1]
            offset += 1
            for i in open_:
                try:
                    clients[i].send(byte)
                except OSError:
                    closed[i] = time.monotonic()
        readable, _, _ = select.select([clients[i] for i in open_ if closed[i] is None], [], [], 0.25)
        for client in readable:
            i = clients.index(client)
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if data:
                said[i] += data
            else:
                closed[i] = time.monotonic()
    return list(zip(closed, said))


def send_without_end(client: socket.socket, start: bytes, piece: bytes, memory: ServerMemory) -> bytes:
    """Send ``start`` then ``piece`` again and again, sampling the server's memory, until the
    server answers or closes the connection; then read what it says until it closes. Fails if
    it reads ``SEND_LIMIT`` bytes or stops reading without closing within ``CUT_WITHIN``."""
    client.settimeout(1.0)
    sent = 0
    try:
        client.sendall(start)
        while True:
            if select.select([client], [], [], 0)[0]:
                break  # the server answered (or closed)
            client.sendall(piece)
            sent += len(piece)
            if sent % (1 << 20) < len(piece):
                memory.sample()
            assert sent < SEND_LIMIT, f"the server read {SEND_LIMIT >> 20} MiB of input that never ends"
    except TimeoutError:
        pass  # the server stopped reading: it must close soon
    except OSError:
        pass  # closed by the server
    memory.sample()
    client.settimeout(None)
    ((at, said),) = watch_until_closed([client], None)
    assert at is not None, f"the server stopped reading but kept the connection open {CUT_WITHIN:g}s"
    return said


def answered_within(client: socket.socket, seconds: float) -> bool:
    return bool(select.select([client], [], [], seconds)[0])


def read_answer(client: socket.socket) -> tuple[int, Any]:
    """The status and body (JSON, or bytes when not) of one answer with a Content-Length."""
    data = b""
    client.settimeout(CUT_WITHIN)
    while b"\r\n\r\n" not in data:
        part = client.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = content_length(head)
    while len(body) < length:
        part = client.recv(65536)
        if not part:
            break
        body += part
    return parse_answer(head + b"\r\n\r\n" + body)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def parse_answer(said: bytes) -> tuple[int, Any]:
    head, _, body = said.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"not an HTTP answer: {said[:200]!r}"
    status = int(status_line.split(b" ")[1])
    body = body[: content_length(head)]
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def assert_shaped(said: bytes, statuses: set[int], code: int = 1011, library: bool = False) -> None:
    """``said`` is one answer of ``statuses`` with the protocol's error object of ``code``
    (only the status when the HTTP library answers it, ``library``)."""
    status, body = parse_answer(said)
    assert status in statuses, f"answered {status}, not {sorted(statuses)}: {said[:300]!r}"
    if library:
        return
    assert isinstance(body, dict) and set(body.get("error", ())) == {"code", "value"}, (
        f"a {status} outside the protocol's shape: {said[:300]!r}"
    )
    assert body["error"]["code"] == code, f"a {status} with code {body['error']['code']}, not {code}"
