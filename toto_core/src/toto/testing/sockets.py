"""The socket contract: what every face that serves Toto's WebSockets must hold, tried as an
attacker would, over a real connection (PROTOCOL.md section 9, SECURITY.md "WebSockets").

- Origins: a session cookie never opens a socket for another site's page (cross-site
  WebSocket hijacking); the origins ``allow_origin`` lists, however they are written
  (commas, spaces, a default port), are the ones credentialed CORS admits; a session
  named by the handshake's header needs no origin rule.
- Messages: one over ``socket_max_message`` closes 1009; one not completed within
  ``socket_message_timeout`` closes 1013, also while its sender answers every ping; all
  the messages a process is receiving hold at most ``socket_max_unfinished`` bytes.
- Queues: a client that stops reading is closed once ``socket_max_queue`` answers wait,
  never buffered without end.

Subclass with one fixture, ``socket_face``: a function that starts a server with the
options it is given (Toto's option names; the contract adds ``server_defaults``) and
returns its address (``http://host:port``); the fixture stops the servers after the test.
The servers call ``toto.testing.methods``::

    class TestMySockets(SocketContract):
        @pytest.fixture
        def socket_face(self):
            started = []

            def start(options):
                server = ServerProcess({**options, "http": "mine"})
                started.append(server.start())
                return server.url

            yield start
            for server in started:
                server.close()

The contract speaks to the socket with ``RawSocket``, a WebSocket client written from
RFC 6455 that sends frames exactly as a test builds them (fragments, pings, partial
frames), with the headers a browser would send.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import pytest

T = TypeVar("T")

#: How long the contract waits for something that must happen (the machine may be busy).
PATIENCE = 30.0
#: Opcodes (RFC 6455 section 5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
COOKIE_SECRET = "the socket contract's cookie secret"


class HandshakeRefused(Exception):
    """The server answered the upgrade with ``status`` (not 101)."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}: {head[:200]!r}")
        self.status = status


class RawSocket:
    """One client WebSocket, by hand: ``await RawSocket.connect(url, headers=...)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None
        self.close_reason = ""
        self.ended = False

    @classmethod
    async def connect(
        cls,
        url: str,
        path: str = "/websocket",
        headers: dict[str, str] | None = None,
        receive_buffer: int | None = None,
    ) -> RawSocket:
        """Open a socket at ``url`` (``http://host:port``) + ``path`` with ``headers`` added to
        the handshake; ``receive_buffer`` shrinks the client's TCP receive buffer (a slow
        reader fills it at once). Raises ``HandshakeRefused`` unless the server upgrades."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), PATIENCE)
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
        except BaseException:
            writer.close()
            raise
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise HandshakeRefused(status, head)
        return cls(reader, writer)

    # -- sending ----------------------------------------------------------------------------------
    async def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """One masked frame, as a client must send it."""
        self.writer.write(frame_head(opcode, len(payload), fin) + masked(payload))
        await self.writer.drain()

    async def send_json(self, message: Any) -> None:
        await self.send_frame(TEXT, json.dumps(message).encode("utf-8"))

    async def acknowledged(self, timeout: float = PATIENCE) -> bool:
        """Send a ping and wait for its pong: True once the server read every frame sent
        before it (a socket reads its frames in order), False when it closed instead."""
        token = secrets.token_bytes(8)
        try:
            await self.send_frame(PING, token)
        except ConnectionError:
            pass  # the server already closed: what it sent before says how
        while True:
            frame = await self.receive(timeout)
            if frame is None:
                return False
            if frame == (PONG, token):
                return True

    # -- receiving --------------------------------------------------------------------------------
    async def receive(self, timeout: float = PATIENCE) -> tuple[int, bytes] | None:
        """The next frame that is not a ping (pings are answered here), None once the
        server closed (``close_code``, ``close_reason``) or the connection ended."""
        while not self.ended:
            try:
                opcode, payload = await asyncio.wait_for(self._frame(), timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.ended = True
                return None
            if opcode == PING:
                await self.send_frame(PONG, payload)
                continue
            if opcode == CLOSE:
                if len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    self.close_reason = payload[2:].decode("utf-8", "replace")
                self.ended = True
                return None
            return opcode, payload
        return None

    async def _frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(length)

    async def message(self, timeout: float = PATIENCE) -> Any:
        """The next message, decoded from JSON (None once the socket closed)."""
        while True:
            frame = await self.receive(timeout)
            if frame is None:
                return None
            if frame[0] in (TEXT, BINARY):
                return json.loads(frame[1])

    async def closed(self, timeout: float = PATIENCE) -> int | None:
        """Read on until the server closes; its close code (None: cut without one)."""
        while await self.receive(timeout) is not None:
            pass
        return self.close_code

    async def call(self, method: str, parameters: Any = None, call_id: Any = 1) -> Any:
        """One call and its answer (``{"id", "result"}`` or ``{"id", "error"}``)."""
        await self.send_json({"id": call_id, "method": method, "parameters": parameters or {}})
        return await self.message()

    def close(self) -> None:
        self.writer.close()


def frame_head(opcode: int, length: int, fin: bool = True) -> bytes:
    """A masked client frame's header (the mask follows: see ``masked``)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, 0x80 | length))
    if length < 1 << 16:
        return bytes((first, 0x80 | 126)) + struct.pack("!H", length)
    return bytes((first, 0x80 | 127)) + struct.pack("!Q", length)


def masked(payload: bytes) -> bytes:
    """A 4-byte mask and ``payload`` XORed with it."""
    mask = os.urandom(4)
    if not payload:
        return mask
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return mask + value.to_bytes(len(payload), "big")


def run(coro: Awaitable[T]) -> T:
    """Run one scenario in a loop of its own, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, 180)

    return asyncio.run(bounded())


def create_account(url: str, user_id: str) -> tuple[dict[str, Any], str | None]:
    """``account.create`` over HTTP as the server's own page would send it (JSON): the
    answer, and the ``name=value`` of the session cookie it sets (None: none)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=PATIENCE)
    try:
        parameters = {"user_id": user_id, "password": secrets.token_urlsafe(12)}
        body = json.dumps({"method": "account.create", "parameters": parameters})
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        envelope = json.loads(answer.read())
        cookies = [c for c in answer.headers.get_all("Set-Cookie") or [] if c.startswith("toto-session-id=")]
        return envelope, cookies[0].split(";", 1)[0] if cookies else None
    finally:
        conn.close()


def session_cookie(url: str, user_id: str) -> str:
    """A new account's session cookie (``name=value``; the server runs ``use_cookies``)."""
    cookie = create_account(url, user_id)[1]
    assert cookie is not None, "account.create set no session cookie (use_cookies)"
    return cookie


def _user() -> str:
    return "sock-" + secrets.token_hex(6)


class SocketContract:
    """The socket half of the transport contract (see the module docstring): subclass with
    a ``socket_face`` fixture."""

    #: Where the face serves sockets, below the server's address.
    socket_path: ClassVar[str] = "/websocket"
    #: Options every server of the contract gets: sockets on, its methods, quick hashing.
    server_defaults: ClassVar[dict[str, Any]] = {
        "use_web_sockets": True,
        "method_module": "toto.testing.methods",
        "database": "memory",
        "password_cost": 10,
        "logging": "warning",
    }

    def start(self, socket_face: Callable[[dict[str, Any]], str], **options: Any) -> str:
        return socket_face({**self.server_defaults, **options})

    async def connect(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> RawSocket:
        return await RawSocket.connect(url, self.socket_path, headers, **kw)

    def cookie_server(self, socket_face: Callable[[dict[str, Any]], str], **options: Any) -> str:
        return self.start(socket_face, use_cookies=True, cookie_secret=COOKIE_SECRET, hmac_mode="off", **options)

    async def refused(self, url: str, headers: dict[str, str]) -> int:
        with pytest.raises(HandshakeRefused) as refusal:
            (await self.connect(url, headers)).close()
        return refusal.value.status

    async def whoami(self, url: str, headers: dict[str, str]) -> Any:
        """The user a socket opened with ``headers`` runs as (None: no session)."""
        conn = await self.connect(url, headers)
        try:
            answer = await conn.call("whoami")
        finally:
            conn.close()
        assert answer is not None, "the socket closed instead of answering"
        return answer["result"]["user_id"] if "result" in answer else None

    # -- origins ----------------------------------------------------------------------------------
    def test_a_session_cookie_never_opens_a_socket_for_another_sites_page(self, socket_face: Any) -> None:
        url = self.cookie_server(socket_face)
        name = _user()
        cookie = session_cookie(url, name)
        own = f"http://{urlsplit(url).netloc}"

        async def scenario() -> None:
            for foreign in (
                {"Origin": "https://evil.example"},
                {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                {"Origin": "null"},
                {"Origin": own.replace("http://", "http://other."), "Sec-Fetch-Site": "same-site"},
            ):
                assert await self.refused(url, {**foreign, "Cookie": cookie}) == 403, foreign
            # The server's own pages, and clients that are not browsers (no Origin), keep their cookie.
            assert await self.whoami(url, {"Origin": own, "Cookie": cookie}) == name
            assert await self.whoami(url, {"Origin": own, "Sec-Fetch-Site": "same-origin", "Cookie": cookie}) == name
            assert await self.whoami(url, {"Cookie": cookie}) == name
            # Another site's page without the cookie may open a socket (allow_origin=*): it has no session.
            assert await self.whoami(url, {"Origin": "https://evil.example"}) is None

        run(scenario())

    def test_listed_origins_are_read_as_credentialed_cors_reads_them(self, socket_face: Any) -> None:
        url = self.cookie_server(
            socket_face, allow_origin="https://a.example,  https://B.example https://c.example:443/"
        )
        name = _user()
        cookie = session_cookie(url, name)

        async def scenario() -> None:
            for origin in ("https://a.example", "https://b.example", "https://c.example"):
                assert await self.whoami(url, {"Origin": origin, "Cookie": cookie}) == name, origin
            for origin in ("https://evil.example", "http://a.example", "https://a.example.evil.example"):
                assert await self.refused(url, {"Origin": origin, "Cookie": cookie}) == 403, origin
                # A listed allow_origin keeps other sites' pages out, cookie or not.
                assert await self.refused(url, {"Origin": origin}) == 403, origin

        run(scenario())

    def test_a_session_named_by_header_needs_no_origin_rule(self, socket_face: Any) -> None:
        url = self.cookie_server(socket_face, allow_origin="https://a.example")
        name = _user()
        cookie = session_cookie(url, name)
        other = _user()
        session_id = create_account(url, other)[0]["result"]["session_id"]

        async def scenario() -> None:
            headers = {"Origin": "https://evil.example", "x-toto-session-id": session_id}
            assert await self.whoami(url, headers) == other
            # The header names the session even when a cookie comes along: the cookie is not used.
            assert await self.whoami(url, {**headers, "Cookie": cookie}) == other

        run(scenario())

    # -- messages ---------------------------------------------------------------------------------
    def test_a_message_over_socket_max_message_closes_1009(self, socket_face: Any) -> None:
        url = self.start(socket_face, socket_max_message=20_000)

        async def scenario() -> None:
            conn = await self.connect(url)
            assert (await conn.call("echo", {"x": "y" * 15_000}))["result"] == {"x": "y" * 15_000}
            await conn.send_json({"id": 2, "method": "echo", "parameters": {"x": "y" * 30_000}})
            assert await conn.closed() == 1009
            # In fragments too: what counts is the message.
            conn = await self.connect(url)
            for n in range(3):
                await conn.send_frame(TEXT if n == 0 else CONTINUATION, b"y" * 9_000, fin=False)
            assert await conn.closed() == 1009

        run(scenario())

    def test_a_message_must_complete_within_socket_message_timeout(self, socket_face: Any) -> None:
        pinging = self.start(socket_face, socket_message_timeout=3, socket_ping_interval=1, socket_ping_timeout=1)
        # A frame cut in its middle cannot answer pings (a pong would be read as its payload):
        # without pings, only the message deadline ends it.
        silent = self.start(socket_face, socket_message_timeout=3, socket_ping_interval=0)

        async def scenario() -> None:
            # Fragments are fine when the message ends in time, pings and all.
            conn = await self.connect(pinging)
            text = json.dumps({"id": 7, "method": "echo", "parameters": {"x": "z" * 3000}}).encode()
            await conn.send_frame(TEXT, text[:1000], fin=False)
            assert await conn.acknowledged()
            await conn.send_frame(CONTINUATION, text[1000:2000], fin=False)
            await conn.send_frame(CONTINUATION, text[2000:])
            assert await conn.message() == {"id": 7, "result": {"x": "z" * 3000}}
            conn.close()
            # A fragmented message that never ends, from a client that answers every ping.
            endless = await self.connect(pinging)
            await endless.send_frame(TEXT, b'{"id": 1, "method": "echo", "parameters": {"x": "', fin=False)
            assert await endless.acknowledged()
            # One frame that never arrives whole.
            dribble = await self.connect(silent)
            dribble.writer.write(frame_head(TEXT, 1000) + masked(b"x" * 1000)[:100])
            assert await endless.closed() == 1013, endless.close_reason
            assert "not completed" in endless.close_reason
            assert await dribble.closed() == 1013, dribble.close_reason
            # The servers go on.
            for url in (pinging, silent):
                conn = await self.connect(url)
                assert (await conn.call("echo", {"a": 1}))["result"] == {"a": 1}
                conn.close()

        run(scenario())

    def test_unfinished_messages_are_bounded_per_process(self, socket_face: Any) -> None:
        fragment = 60 * 1024
        limit = 256 * 1024
        url = self.start(
            socket_face, socket_max_message=1024 * 1024, socket_max_unfinished=limit, socket_message_timeout=120
        )
        head = b'{"id": 1, "method": "echo", "parameters": {"x": "'

        async def scenario() -> None:
            holding: list[RawSocket] = []
            cut: RawSocket | None = None
            for _ in range(limit // fragment + 2):
                conn = await self.connect(url)
                await conn.send_frame(TEXT, head + b"a" * (fragment - len(head)), fin=False)
                if not await conn.acknowledged():
                    cut = conn
                    break
                holding.append(conn)
            assert cut is not None, (
                f"{len(holding)} sockets held {len(holding) * fragment} bytes of unfinished messages"
            )
            assert cut.close_code == 1013, (cut.close_code, cut.close_reason)
            assert len(holding) == limit // fragment, "the bound is the sum of unfinished messages"
            # The others were not cut: one finishes its message and is answered, which frees its share.
            first = holding[0]
            await first.send_frame(CONTINUATION, b'"}}')
            answer = await first.message()
            assert answer is not None and len(answer["result"]["x"]) == fragment - len(head)
            again = await self.connect(url)
            await again.send_frame(TEXT, head + b"b" * (fragment - len(head)), fin=False)
            assert await again.acknowledged(), "a finished message gives its bytes back"
            for conn in (*holding, again):
                conn.close()

        run(scenario())

    # -- queues -----------------------------------------------------------------------------------
    def test_a_client_that_stops_reading_is_closed(self, socket_face: Any) -> None:
        url = self.start(socket_face, socket_max_queue=4, socket_max_message=1024 * 1024)
        calls = 64
        size = 256 * 1024

        async def scenario() -> None:
            slow = await self.connect(url, receive_buffer=16 * 1024)
            try:
                for n in range(calls):  # 16 MiB of answers it does not read
                    await slow.send_json({"id": n, "method": "echo", "parameters": {"x": "q" * size}})
            except ConnectionError:
                pass  # cut while still sending: what is tested
            answers = 0
            while (frame := await slow.receive()) is not None:
                answers += frame[0] == TEXT
            assert answers < calls, "every answer was kept for a client that did not read"
            assert slow.close_code in (1013, None), (
                slow.close_code
            )  # the close frame may wait behind what it never read
            # Others are served meanwhile.
            other = await self.connect(url)
            assert (await other.call("echo", {"b": 2}))["result"] == {"b": 2}
            other.close()

        run(scenario())
