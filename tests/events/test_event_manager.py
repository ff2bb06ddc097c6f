"""EventManager and request-bound handlers, in one process, through the real request path.

The connection under each request is a minimal stand-in for Tornado's HTTP connection
(the thing under test is handler registration and removal, not HTTP); everything above
it is the real TotoHandler, TotoServer, EventManager and local bus.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from toto.events import EventManager

from tests.conftest import BASIC_APP


class _Connection:
    """Accepts the response and remembers it; ``close()`` acts like the client hanging up."""

    def __init__(self) -> None:
        self.body = b""
        self.finished = False
        self.close_callback: Callable[[], None] | None = None
        self.context = None
        self.stream = None  # HTTP1Connection's: what the transport's ConnectionDeadlines key connections by

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.close_callback = callback

    def write_headers(self, start_line: Any, headers: Any, chunk: bytes | None = None) -> asyncio.Future[None]:
        if chunk:
            self.body += chunk
        return _done()

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        self.body += chunk
        return _done()

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self.close_callback is not None:
            self.close_callback()


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def with_server(body: Callable[[Any], Awaitable[None]]) -> None:
    if BASIC_APP not in sys.path:
        sys.path.insert(0, BASIC_APP)
    from toto.server import TotoServer

    server = TotoServer(argv=[], method_module="methods", database="memory", logging="warning")

    async def main() -> None:
        await server.start(sockets=[])
        try:
            await body(server)
        finally:
            await server.stop()

    asyncio.run(main())


def request(server: Any, method: str, parameters: dict[str, Any]) -> tuple[Any, _Connection, Awaitable[None]]:
    """Start one POST of ``method``; returns the handler, its connection and the running call."""
    from toto.handler import TotoHandler
    from toto.transports.tornado import ConnectionDeadlines, Writer

    connection = _Connection()
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    headers = HTTPHeaders({"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": str(len(body))})
    start_line = RequestStartLine("POST", "/", "HTTP/1.1")
    http_request = HTTPServerRequest(start_line=start_line, headers=headers, body=body, connection=connection)
    handler = TotoHandler(
        server.application, http_request, Writer(connection, ConnectionDeadlines(0.0, 0.0)), server=server
    )
    handler._transforms = []  # what Tornado's _execute sets before a verb method runs
    handler._chunks = [body]
    return handler, connection, asyncio.ensure_future(handler.post(""))


def test_100000_long_polls_leave_no_handlers() -> None:
    async def body(server: Any) -> None:
        manager = EventManager.instance()
        assert manager.handler_count() == 0
        for batch in range(100):
            calls = []
            for i in range(1000):
                # Half time out and answer null; half lose their connection while waiting.
                handler, connection, call = request(server, "events.wait", {"name": f"e{i % 7}", "timeout": 0})
                calls.append((i, handler, connection, call))
            await asyncio.sleep(0)
            assert manager.handler_count() == 1000, "every long poll registers one handler"
            for i, _, connection, _ in calls:
                if i % 2:
                    connection.close()
            await asyncio.gather(*(call for _, _, _, call in calls), return_exceptions=True)
            for i, handler, connection, _ in calls:
                assert handler._finished or i % 2
                if not i % 2:
                    assert json.loads(connection.body) == {}  # a null result answers an empty envelope
            assert manager.handler_count() == 0, f"handlers left after batch {batch}"
            assert not server.in_flight
        gc.collect()
        assert manager._handlers == {}

    with_server(body)


def test_event_answers_a_waiting_request_and_then_the_handler_is_gone() -> None:
    async def body(server: Any) -> None:
        manager = EventManager.instance()
        handler, connection, call = request(server, "events.wait", {"name": "ping", "timeout": 30})
        await asyncio.sleep(0)
        assert manager.handler_count("ping") == 1
        await manager.send("ping", {"n": 1, "text": "ü"})
        await asyncio.wait_for(call, 5)
        assert json.loads(connection.body) == {"result": {"event": "ping", "args": {"n": 1, "text": "ü"}}}
        assert manager.handler_count() == 0

    with_server(body)


def test_a_handler_of_a_finished_request_never_fires() -> None:
    async def body(server: Any) -> None:
        manager = EventManager.instance()
        fired: list[Any] = []
        handler, connection, call = request(server, "echo", {"a": 1})
        await call
        assert handler._finished
        # Registering on a finished request (e.g. from a late callback) must not leak or fire.
        handler.register_event_handler("late", fired.append)
        await manager.send("late", 1)
        await asyncio.sleep(0.05)
        assert fired == []
        assert manager.handler_count("late") == 0

    with_server(body)


def test_a_request_handler_fires_once_and_never_after_the_request_whatever_deregister_on_finish() -> None:
    async def body(server: Any) -> None:
        manager = EventManager.instance()
        fired: list[Any] = []
        handler, connection, call = request(server, "events.wait", {"name": "other", "timeout": 30})
        await asyncio.sleep(0)
        handler.register_event_handler("once", fired.append, deregister_on_finish=False)
        await manager.send("once", 1)
        await manager.send("once", 2)
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert fired == [1], "the original's handlers fire once"
        late: list[Any] = []
        handler.register_event_handler("after", late.append, deregister_on_finish=False)
        await manager.send("other", "done")
        await asyncio.wait_for(call, 5)
        assert manager.handler_count("after") == 0, "dropped with its request"
        await manager.send("after", 3)
        await asyncio.sleep(0.05)
        assert late == []

    with_server(body)


def test_persistent_handlers_fire_every_time_until_removed() -> None:
    async def body(server: Any) -> None:
        manager = EventManager.instance()
        kept: list[Any] = []
        once: list[Any] = []
        sig = manager.register_handler("tick", kept.append, persist=True)
        manager.register_handler("tick", once.append)
        for n in range(3):
            await manager.send("tick", n)
            for _ in range(100):
                if len(kept) > n:
                    break
                await asyncio.sleep(0.01)
        assert kept == [0, 1, 2] and once == [0]
        assert manager.handler_count("tick") == 1
        manager.remove_handler(sig)
        assert manager.handler_count() == 0

    with_server(body)


def test_register_handler_thread_pool_and_unicast() -> None:
    async def body(server: Any) -> None:
        import threading

        manager = EventManager.instance()
        threads: list[str] = []
        sig = manager.register_handler("work", lambda args: threads.append(threading.current_thread().name), False)
        main_sig = manager.register_handler("work", lambda args: threads.append("main:" + str(args)))
        await manager.send("work", "x", broadcast=False)
        for _ in range(100):
            if len(threads) == 2:
                break
            await asyncio.sleep(0.01)
        assert "main:x" in threads and any(t != "main:x" and t != threading.current_thread().name for t in threads)
        manager.remove_handler(sig)
        manager.remove_handler(main_sig)

    with_server(body)


def test_unsafe_payloads_are_refused() -> None:
    async def body(server: Any) -> None:
        try:
            EventManager.instance().send("x", object())
        except TypeError as exc:
            assert "JSON" in str(exc)
        else:
            raise AssertionError("an object JSON cannot carry must be refused, never pickled")

    with_server(body)
