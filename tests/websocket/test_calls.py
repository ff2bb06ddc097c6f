"""Calls over a real WebSocket: answers by id, out of order, batches, bad input, the original's options."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from tornado.websocket import WebSocketError
from toto.client import TotoClient, TotoClientError

from tests.websocket.conftest import SOCKETS_APP, answer, raw_socket, run


def test_calls_answer_by_id_and_out_of_order(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(json.dumps({"id": "slow", "method": "sleep", "parameters": {"seconds": 1.0}}))
        conn.write_message(json.dumps({"id": 2, "method": "echo", "parameters": {"x": "ünï"}}))
        first, second = await answer(conn), await answer(conn)
        # The echo was sent second and answers first: the slow call did not hold it back.
        assert first == {"id": 2, "result": {"x": "ünï"}}
        assert second == {"id": "slow", "result": {"slept": 1.0}}
        conn.close()

    run(scenario())


def test_python_client_calls_concurrently(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        async with await server.async_client().connect() as sock:
            results = await asyncio.gather(*(sock.call("echo", {"n": n}) for n in range(50)))
            assert results == [{"n": n} for n in range(50)]
            assert await sock.call("later", {"value": 7, "delay": 0.01}) == {"later": 7}
            assert (await sock.call("db"))["type"]  # handler.connection.db is there
            try:
                await sock.call("fail")  # a method's bug: 1000 with a short message
            except TotoClientError as exc:
                assert exc.code == 1000 and "Traceback" not in str(exc.value)
            else:
                raise AssertionError("fail answered")
            try:
                await sock.call("toto_error")
            except TotoClientError as exc:
                assert exc.code == 4242
            else:
                raise AssertionError("toto_error answered")

    run(scenario())


def test_batch_as_over_http(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        batch = {"a": {"method": "echo", "parameters": {"v": 1}}, "b": {"method": "_private"}, "c": "nope"}
        conn.write_message(json.dumps({"id": 9, "batch": batch}))
        got = await answer(conn)
        assert got["id"] == 9
        assert got["batch"]["a"] == {"result": {"v": 1}}
        assert got["batch"]["b"]["error"]["code"] == 1001
        assert got["batch"]["c"]["error"]["code"] == 1011
        async with await server.async_client().connect() as sock:
            results = await sock.batch({"x": ("echo", {"q": 1}), "y": ("sleep", {"seconds": 0.01})})
            assert results == {"x": {"q": 1}, "y": {"slept": 0.01}}

    run(scenario())


def test_bad_messages_get_errors_and_the_socket_stays_open(socket_server) -> None:
    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        for frame, code in [
            ("{not json", 1011),
            ("[1, 2]", 1011),
            ('{"id": 1}', 1011),
            ('{"id": 1, "method": "../etc"}', 1001),
            ('{"id": 1, "method": "os.system"}', 1001),
            ('{"id": [1], "method": "echo"}', 1011),
        ]:
            conn.write_message(frame)
            got = await answer(conn)
            assert got["error"]["code"] == code, (frame, got)
            assert "Traceback" not in json.dumps(got)
        conn.write_message(b"\x81\xa1a\x01", binary=True)  # msgpack: toto-msgpack is installed here
        assert (await answer(conn))["error"]["code"] == 1011  # an object without a method
        conn.write_message(json.dumps({"id": "still", "method": "echo", "parameters": {}}))
        assert await answer(conn) == {"id": "still", "result": {}}
        conn.close()

    run(scenario())
    assert "Traceback" not in server.output()


def test_msgpack_frames_answer_in_msgpack(socket_server) -> None:
    import msgpack

    server = socket_server()

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(msgpack.packb({"id": 1, "method": "echo", "parameters": {"b": b"\x00\xff"}}), binary=True)
        frame = await conn.read_message()
        assert isinstance(frame, bytes)
        assert msgpack.unpackb(frame) == {"id": 1, "result": {"b": b"\x00\xff"}}
        async with await server.async_client().connect(binary=True) as sock:
            assert await sock.call("echo", {"n": [1, 2]}) == {"n": [1, 2]}

    run(scenario())


def test_plain_get_of_the_socket_path_is_a_protocol_error(socket_server) -> None:
    server = socket_server()
    try:
        urllib.request.urlopen(server.url + "/websocket", timeout=10)  # noqa: S310 - http://127.0.0.1
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert json.loads(exc.read())["error"]["code"] == 1011
    else:
        raise AssertionError("a plain GET was answered 200")
    # Other paths are still method calls.
    assert server.client().call("echo", {"a": 1}) == {"a": 1}


def test_sockets_off_by_default(start_server) -> None:
    server = start_server(database="memory")

    async def scenario() -> None:
        try:
            await raw_socket(server)
        except WebSocketError as exc:
            assert "Non-websocket response" in str(exc)
        else:
            raise AssertionError("sockets answered with use_web_sockets off")

    run(scenario())
    # Over HTTP the path is a method name like any other: there is no such method.
    with pytest.raises(TotoClientError) as error:
        server.client().call("websocket")
    assert error.value.code == 1001


def test_original_options_socket_method_module_and_hooks(socket_server) -> None:
    server = socket_server(
        cwd=SOCKETS_APP,
        socket_path="live/ws",
        root="/api",
        socket_method_module="socket_methods",
        socket_opened_method="socket_methods.hooks.opened",
        socket_closed_method="socket_methods.hooks.closed",
    )

    async def scenario() -> None:
        conn = await raw_socket(server, "/api/live/ws")
        assert await answer(conn) == {"hello": 1}  # the opened hook got the socket handler
        conn.write_message(json.dumps({"id": 1, "method": "where"}))
        assert await answer(conn) == {"id": 1, "result": {"package": "socket_methods"}}
        conn.close()
        for _ in range(600):
            second = await raw_socket(server, "/api/live/ws")
            await answer(second)
            second.write_message(json.dumps({"id": 2, "method": "counts"}))
            counts = (await answer(second))["result"]
            second.close()
            if counts["closed"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert counts["closed"] >= 1 and counts["opened"] >= 2

    run(scenario())
    assert TotoClient(server.url + "/api").call("where") == {"package": "methods"}  # HTTP keeps method_module


def test_bad_hook_option_is_a_clear_startup_error(socket_server) -> None:
    try:
        socket_server(socket_opened_method="nowhere.to_be_found")
    except RuntimeError as exc:
        assert "socket_opened_method" in str(exc)
        assert "Traceback" not in str(exc)
    else:
        raise AssertionError("the server started")
