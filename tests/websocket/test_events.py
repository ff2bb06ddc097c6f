"""Events pushed to sockets: subscribe, unsubscribe, limits, from another process of a
``--processes`` group, and slow consumers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from toto.client import TotoClient, TotoClientError

from tests.conftest import BASIC_APP
from tests.operations import free_ports, wait_until_answers
from tests.websocket.conftest import PATIENCE, answer, raw_socket, run


def test_subscribe_push_unsubscribe(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        async with await server.async_client().connect() as sock, await server.async_client().connect() as other:
            assert await sock.subscribe("news", "weather") == ["news", "weather"]
            got: list[object] = []
            await other.subscribe("news", callback=got.append)
            await sock.call("events.send", {"name": "news", "args": {"headline": "ünï", "n": [1, 2]}})
            assert await sock.next_event(PATIENCE) == ("news", {"headline": "ünï", "n": [1, 2]})
            await sock.call("events.send", {"name": "weather", "args": None})
            assert await sock.next_event(PATIENCE) == ("weather", None)
            assert got == [{"headline": "ünï", "n": [1, 2]}]  # the callback had it before the next answer
            assert await sock.unsubscribe("news") == ["weather"]
            await sock.call("events.send", {"name": "news", "args": 1})
            await sock.call("events.send", {"name": "weather", "args": 2})
            # Events arrive in order: "news" did not come before "weather".
            assert await sock.next_event(PATIENCE) == ("weather", 2)
            assert await sock.unsubscribe() == []
        # The sockets are gone and so are their handlers.
        for _ in range(100):
            if TotoClient(server.url).call("events.count")["handlers"] == 0:
                break
            await asyncio.sleep(0.05)
        assert TotoClient(server.url).call("events.count")["handlers"] == 0

    run(scenario())


def test_pushes_reach_raw_sockets_in_their_shape(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(json.dumps({"id": 1, "method": "toto.subscribe", "parameters": {"events": ["tick"]}}))
        assert await answer(conn) == {"id": 1, "result": {"subscribed": ["tick"]}}
        TotoClient(server.url).call("events.send", {"name": "tick", "args": {"at": 1}})
        pushed = await answer(conn)
        # The event's position on its bus rides along (README "WebSockets", recovery).
        assert pushed == {
            "event": "tick",
            "data": {"at": 1},
            "position": {"epoch": pushed["position"]["epoch"], "seq": 1},
        }
        conn.close()

    run(scenario())


def test_subscription_limits_and_allowed_names(socket_server) -> None:
    server = socket_server(socket_max_subscriptions=3, socket_events="chat.*,news")

    async def scenario() -> None:
        async with await server.async_client().connect() as sock:
            assert await sock.subscribe("chat.a", "chat.b", "news") == ["chat.a", "chat.b", "news"]
            with pytest.raises(TotoClientError) as error:
                await sock.subscribe("chat.c")
            assert error.value.code == 1011 and "at most 3" in str(error.value.value)
            await sock.unsubscribe("chat.a")
            with pytest.raises(TotoClientError) as error:
                await sock.subscribe("secrets")
            assert "secrets" in str(error.value.value)
            for bad in [{"events": 5}, {"events": [""]}, {"events": [1]}, []]:
                with pytest.raises(TotoClientError) as error:
                    await sock.call("toto.subscribe", bad)
                assert error.value.code == 1011
            assert await sock.subscribe("chat.c") == ["chat.b", "chat.c", "news"]

    run(scenario())


def test_pushes_from_another_process_of_the_group() -> None:
    """``toto serve --processes=2``: a socket on the first port receives an event sent through the second."""
    port = free_ports(2)
    command = [
        sys.executable, "-m", "toto", "serve", "--processes=2", f"--port={port}", "--address=127.0.0.1",
        "--database=memory", "--logging=warning", "--use_web_sockets=true", "--socket_events=group-*",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=BASIC_APP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    try:
        for url in urls:
            wait_until_answers(url)

        async def scenario() -> None:
            from toto.client import AsyncTotoClient

            async with await AsyncTotoClient(urls[0]).connect() as sock:
                await sock.subscribe("group-news")
                async with await AsyncTotoClient(urls[1]).connect() as other:
                    await other.call("events.send", {"name": "group-news", "args": {"from": "second"}})
                assert await sock.next_event(PATIENCE) == ("group-news", {"from": "second"})

        run(scenario())
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_a_slow_consumer_is_closed_and_others_go_on(socket_server) -> None:
    server = socket_server(socket_max_queue=20)
    payload = "x" * 60_000

    async def scenario() -> None:
        slow = await raw_socket(server)
        slow.write_message(json.dumps({"id": 1, "method": "toto.subscribe", "parameters": {"events": ["flood"]}}))
        assert (await answer(slow))["result"] == {"subscribed": ["flood"]}
        # ... and from now on the slow socket reads nothing (Tornado's client stops reading the
        # connection while a message waits unread), so what the server sends it piles up.
        async with await server.async_client().connect() as fast:
            await fast.subscribe("flood")
            for _ in range(400):
                await fast.call("events.send", {"name": "flood", "args": payload})
                assert (await fast.next_event(PATIENCE))[0] == "flood"  # the fast socket keeps up
            assert await fast.call("echo", {"still": True}) == {"still": True}
        received = 0
        while True:
            frame = await asyncio.wait_for(slow.read_message(), PATIENCE)
            if frame is None:
                break
            received += 1
        # Closed long before the flood was over (1013, or cut when the close frame could not get through).
        assert received < 400
        assert slow.close_code in (1013, None)

    run(scenario())
    assert "closing a slow consumer" in server.output()


def test_methods_register_event_handlers_for_the_life_of_the_socket(socket_server) -> None:
    """A callback-style method (a long poll) over a socket: answered by the event; its handler
    is dropped when the socket closes (the original's socket semantics)."""
    server = socket_server()

    async def scenario() -> None:
        http = TotoClient(server.url)
        async with await server.async_client().connect() as sock:
            waiting = asyncio.ensure_future(sock.call("events.wait", {"name": "ping", "timeout": 60}))
            for _ in range(600):
                if http.call("events.count")["handlers"] == 1:
                    break
                await asyncio.sleep(0.02)
            http.call("events.send", {"name": "ping", "args": {"n": 1}})
            assert await waiting == {"event": "ping", "args": {"n": 1}}
            assert await sock.call("echo", {"after": 1}) == {"after": 1}
        for _ in range(600):
            if http.call("events.count")["handlers"] == 0:
                break
            await asyncio.sleep(0.02)
        assert http.call("events.count")["handlers"] == 0

    run(scenario())


def test_no_event_is_subscribable_by_default(socket_server) -> None:
    server = socket_server(socket_events="")

    async def scenario() -> None:
        async with await server.async_client().connect() as sock:
            with pytest.raises(TotoClientError) as error:
                await sock.subscribe("anything")
            assert error.value.code == 1011 and "socket_events" in str(error.value.value)

    run(scenario())
