"""Sessions and signing on sockets (PROTOCOL.md sections 3, 4, 9), with frames built by hand
from README "WebSockets" alone, and with the Python client in every hmac_mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
from toto.client import TotoClient, TotoClientError

from tests.websocket.conftest import answer, closed, raw_socket, run


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def user_id_frame(user_id: str, message: dict) -> str:
    text = json.dumps(message)
    return text[:-1] + ',"hmac":"' + b64(hmac.new(user_id.encode(), text.encode(), hashlib.sha1).digest()) + '"}'


def session_key_frame(key: str, message: dict, timestamp: int | None = None) -> str:
    message = dict(message, timestamp=int(time.time()) if timestamp is None else timestamp)
    text = json.dumps(message, ensure_ascii=False)
    secret = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    signed = str(message["timestamp"]).encode() + b"\n" + text.encode("utf-8")
    return text[:-1] + ',"hmac":"' + b64(hmac.new(secret, signed, hashlib.sha256).digest()) + '"}'


def test_user_id_mode(socket_server) -> None:
    server = socket_server()
    http = server.client()
    session = http.create("Sock-Émile", "secret-pass")

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"x-toto-session-id": session["session_id"]})
        conn.write_message(user_id_frame("sock-émile", {"id": 1, "method": "whoami", "parameters": {}}))
        assert await answer(conn) == {"id": 1, "result": {"user_id": "sock-émile"}}
        # Not signed: a method that does not ask for a session runs without one ...
        conn.write_message(json.dumps({"id": 2, "method": "optional"}))
        assert await answer(conn) == {"id": 2, "result": {"user_id": None}}
        # ... one that does is refused with 1008, and the socket is closed (policy).
        conn.write_message(user_id_frame("somebody-else", {"id": 3, "method": "whoami", "parameters": {}}))
        assert (await answer(conn))["error"]["code"] == 1008
        assert (await closed(conn))[0] == 1008

    run(scenario())


def test_session_key_mode_signs_every_message_and_refuses_replays(socket_server) -> None:
    server = socket_server(hmac_mode="session_key")
    http = server.client(hmac_mode="session_key")
    session = http.create("keyed", "secret-pass")
    key = session["key"]

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"x-toto-session-id": session["session_id"]})
        frame = session_key_frame(key, {"id": "a", "method": "whoami", "parameters": {}})
        conn.write_message(frame)
        assert await answer(conn) == {"id": "a", "result": {"user_id": "keyed"}}
        conn.write_message(frame)  # the same bytes again: a replay
        assert (await answer(conn))["error"]["code"] == 1015
        # A replay on another socket (another connection of the deployment) too.
        other = await raw_socket(server, headers={"x-toto-session-id": session["session_id"]})
        other.write_message(frame)
        assert (await answer(other))["error"]["code"] == 1015
        stale = session_key_frame(key, {"id": "b", "method": "whoami", "parameters": {}}, int(time.time()) - 3600)
        conn.write_message(stale)
        assert (await answer(conn))["error"]["code"] == 1015
        conn.write_message(session_key_frame(key, {"id": "c", "method": "echo", "parameters": {"t": "日本"}}))
        assert await answer(conn) == {"id": "c", "result": {"t": "日本"}}
        # Without a timestamp: 1015, as over HTTP; signed with another key: 1008 and closed.
        conn.write_message(user_id_frame("keyed", {"id": "d", "method": "whoami", "parameters": {}}))
        assert (await answer(conn))["error"]["code"] == 1015
        conn.write_message(session_key_frame("A" * 43, {"id": "e", "method": "whoami", "parameters": {}}))
        assert (await answer(conn))["error"]["code"] == 1008
        assert (await closed(conn))[0] == 1008
        other.close()

    run(scenario())


def test_session_key_nonce_tells_identical_calls_apart(socket_server) -> None:
    server = socket_server(hmac_mode="session_key")
    session = server.client(hmac_mode="session_key").create("nonced", "secret-pass")
    key, stamp = session["key"], int(time.time())

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"x-toto-session-id": session["session_id"]})
        call = {"id": 1, "method": "whoami", "parameters": {}}
        # The same call, the same second, two nonces: two calls, both answered.
        for nonce in ("first-nonce-0001", "second-nonce-002"):
            conn.write_message(session_key_frame(key, dict(call, nonce=nonce), stamp))
            assert await answer(conn) == {"id": 1, "result": {"user_id": "nonced"}}
        # The same nonce again is the same signed text: a replay.
        conn.write_message(session_key_frame(key, dict(call, nonce="first-nonce-0001"), stamp))
        assert (await answer(conn))["error"]["code"] == 1015
        # A nonce not of the protocol's form is refused like a bad signature.
        conn.write_message(session_key_frame(key, dict(call, nonce="short"), stamp))
        assert (await answer(conn))["error"]["code"] == 1008

    run(scenario())

    async def client_frames() -> None:
        client = server.async_client(hmac_mode="session_key")
        await client.login("nonced", "secret-pass")
        async with await client.connect() as sock:
            frames = [json.loads(sock.encode({"id": 7, "method": "whoami"})) for _ in range(2)]
            assert frames[0]["nonce"] != frames[1]["nonce"] and len(frames[0]["nonce"]) >= 16
            assert await asyncio.gather(*(sock.call("whoami") for _ in range(5))) == [{"user_id": "nonced"}] * 5

    run(client_frames())


def test_off_mode_the_session_id_alone(socket_server) -> None:
    server = socket_server(hmac_mode="off")
    session = server.client(hmac_mode="off").create("plain", "secret-pass")

    async def scenario() -> None:
        conn = await raw_socket(server)
        # The session named by the first message instead of a header (what browsers can do).
        conn.write_message(json.dumps({"session_id": session["session_id"]}))
        conn.write_message(json.dumps({"id": 1, "method": "whoami"}))
        assert await answer(conn) == {"id": 1, "result": {"user_id": "plain"}}
        conn.close()
        # As in the original: the session id as the last path segment.
        conn = await raw_socket(server, "/websocket/" + session["session_id"])
        conn.write_message(json.dumps({"id": 2, "method": "whoami"}))
        assert await answer(conn) == {"id": 2, "result": {"user_id": "plain"}}
        conn.close()

    run(scenario())


@pytest.mark.parametrize("mode", ["user_id", "session_key", "off"])
@pytest.mark.parametrize("binary", [False, True])
def test_python_client_signs_in_every_mode(socket_server, mode: str, binary: bool) -> None:
    server = socket_server(hmac_mode=mode)

    async def scenario() -> None:
        client = server.async_client(hmac_mode=mode)
        async with await client.connect(binary=binary) as sock:
            with pytest.raises(TotoClientError) as error:
                await sock.call("whoami")
            assert error.value.code == 1004
            created = await sock.create("Client-" + mode, "secret-pass")
            assert ("key" in created) == (mode == "session_key")
            # Signed calls, many at once (identical calls in one second must not look like replays).
            answers = await asyncio.gather(*(sock.call("whoami") for _ in range(20)))
            assert answers == [{"user_id": "client-" + mode}] * 20
            assert await sock.batch({"w": ("whoami", None), "e": ("echo", {"é": 1})}) == {
                "w": {"user_id": "client-" + mode},
                "e": {"é": 1},
            }
        # A new socket of the same client names the session at the handshake.
        async with await client.connect(binary=binary) as sock:
            assert await sock.call("whoami") == {"user_id": "client-" + mode}

    run(scenario())


def test_logout_on_the_socket_closes_it(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        client = server.async_client()
        await client.create("leaver", "secret-pass")
        sock = await client.connect()
        assert await sock.call("whoami") == {"user_id": "leaver"}
        assert await sock.logout() == {"authenticated": False}
        assert await sock.wait_closed(30) == (1008, "session ended")

    run(scenario())


def test_logout_elsewhere_and_expiry_close_the_socket(socket_server) -> None:
    server = socket_server(socket_session_check=0.1, session_ttl=3, session_renew=0)

    async def scenario() -> None:
        http = TotoClient(server.url)
        http.create("twice", "secret-pass")
        client = server.async_client()
        client.session = dict(http.session or {})
        sock = await client.connect()
        assert await sock.call("whoami") == {"user_id": "twice"}
        http.logout()  # over HTTP, on another connection
        assert await sock.wait_closed(30) == (1008, "session ended")
        # Expiry: the session is left alone until its ttl passes.
        await client.login("twice", "secret-pass")
        sock = await client.connect()
        assert await sock.call("whoami") == {"user_id": "twice"}
        assert await sock.wait_closed(60) == (1008, "session ended")

    run(scenario())


def test_unknown_session_runs_open_methods_anonymously(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"x-toto-session-id": "A" * 22})
        conn.write_message(json.dumps({"id": 1, "method": "echo", "parameters": {"x": 1}}))
        assert await answer(conn) == {"id": 1, "result": {"x": 1}}
        conn.write_message(user_id_frame("x", {"id": 2, "method": "whoami", "parameters": {}}))
        assert (await answer(conn))["error"]["code"] == 1007
        conn.write_message(json.dumps({"id": 3, "method": "echo", "parameters": {}}))
        assert await answer(conn) == {"id": 3, "result": {}}  # never had a session: still open
        conn.close()

    run(scenario())


def test_binary_frames_with_a_bad_signature_are_refused(socket_server) -> None:
    import msgpack

    server = socket_server()
    session = server.client().create("packed", "secret-pass")

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"x-toto-session-id": session["session_id"]})
        unsigned = {"id": 1, "method": "whoami", "parameters": {}}
        signature = base64.b64encode(hmac.new(b"packed", msgpack.packb(unsigned), hashlib.sha1).digest()).decode()
        conn.write_message(msgpack.packb({**unsigned, "hmac": signature}), binary=True)
        assert await answer(conn) == {"id": 1, "result": {"user_id": "packed"}}
        conn.write_message(msgpack.packb({**unsigned, "id": 2, "hmac": "é" * 28}), binary=True)
        assert (await answer(conn))["error"]["code"] == 1008
        assert (await closed(conn))[0] == 1008

    run(scenario())


def test_a_cookie_session_names_the_socket_session(socket_server) -> None:
    """With use_cookies, the browser's signed session cookie names the socket's session at
    the handshake; an altered cookie names none."""
    server = socket_server(use_cookies=True, cookie_secret="s" * 32, hmac_enabled=False)
    name = "cookie-sock"
    status, headers, body = server.client().request(
        json.dumps({"method": "account.create", "parameters": {"user_id": name, "password": "secret-pass"}}).encode(),
        content_type="application/json",
        sign=False,
    )
    cookie = next(
        value.split(";", 1)[0]
        for key, value in headers.items()
        if key.lower() == "set-cookie" and value.startswith("toto-session-id=")
    )

    async def scenario() -> None:
        conn = await raw_socket(server, headers={"Cookie": cookie})
        conn.write_message(json.dumps({"id": 1, "method": "whoami", "parameters": {}}))
        assert await answer(conn) == {"id": 1, "result": {"user_id": name}}
        forged = await raw_socket(server, headers={"Cookie": cookie[:-3] + "AAA"})
        forged.write_message(json.dumps({"id": 2, "method": "optional", "parameters": {}}))
        assert await answer(forged) == {"id": 2, "result": {"user_id": None}}

    run(scenario())
