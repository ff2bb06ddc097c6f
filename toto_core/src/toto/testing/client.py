"""In-process clients for an application's own tests: ``TestClient`` and ``AsyncTestClient``.

::

    from toto.testing import TestClient

    def test_hello():
        with TestClient(method_module="methods", database="memory") as client:
            client.create("ann", "secret-pass")
            assert client.call("hello", {"name": "Ann"}) == "Hello, Ann!"

Each one builds a ``TotoServer`` from the same options as ``toto serve`` (keyword arguments,
then ``conf_file`` when given; the command line is not read) and serves it through its
public ASGI face (``toto.asgi.app``) in memory: no port, no subprocess, the real request
path (sessions, signing in every ``hmac_mode``, validation, serializers, plugins).
The interface is ``TotoClient``'s (``create``, ``login``, ``logout``, ``call``, ``get``,
``batch``, ``request``, ``session``); the client signs as the server's ``hmac_mode`` asks
(``client_hmac_mode`` names another client half, to test a mismatch). ``serializer`` and
``accept`` are the client's, as for ``TotoClient``. Calls answered 1013 are not sent again
unless ``retries`` is given, so a test sees every answer.

``TestClient`` is blocking and runs the server on an event loop of its own thread;
``AsyncTestClient`` runs it on the caller's loop (``async with AsyncTestClient(...)``).
``client.client()`` is another client of the same server, with a session of its own.
WebSockets are not served in memory: use ``ServerProcess`` for them. Servers share the
process's event manager, so run one in-process server at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from toto.client import AsyncTotoClient, TotoClient

if TYPE_CHECKING:
    from toto.server import TotoServer

T = TypeVar("T")

#: The Host of in-process requests (what Starlette's and Litestar's test clients send too).
HOST = "testserver"


class InProcessServer:
    """A ``TotoServer`` behind its ASGI application, started and called in memory."""

    def __init__(self, conf_file: str | None, options: dict[str, Any]) -> None:
        from toto.asgi import app

        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                self.app = app(conf_file, **options)
        except SystemExit:
            # A configuration mistake: ``toto serve`` prints it and exits; a test gets an exception.
            raise ValueError(said.getvalue().strip().removeprefix("toto: error: ") or "bad options") from None
        sys.stderr.write(said.getvalue())
        self.server = self.app.server
        self._shutdown: asyncio.Event | None = None
        self._lifespan: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        root = str(self.server.options.root).strip("/")
        return f"http://{HOST}/{root}" if root else f"http://{HOST}"

    async def start(self) -> None:
        """ASGI lifespan startup: storage, event bus, plugins; raises when the server cannot start."""
        shutdown = self._shutdown = asyncio.Event()
        started: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        steps = iter(("lifespan.startup", "lifespan.shutdown"))

        async def receive() -> dict[str, Any]:
            step = next(steps)
            if step == "lifespan.shutdown":
                await shutdown.wait()
            return {"type": step}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed") and not started.done():
                started.set_result(message.get("message") if message["type"].endswith("failed") else None)

        self._lifespan = asyncio.ensure_future(self.app({"type": "lifespan"}, receive, send))

        def ended(task: asyncio.Task[None]) -> None:
            if not started.done():
                started.set_result("the server stopped")

        self._lifespan.add_done_callback(ended)
        failure = await started
        if failure is not None:
            raise RuntimeError(f"the Toto server did not start: {failure}")

    async def stop(self) -> None:
        """ASGI lifespan shutdown: storage and the event bus close."""
        if self._shutdown is not None and self._lifespan is not None:
            self._shutdown.set()
            await self._lifespan
            self._shutdown = self._lifespan = None

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        """One HTTP exchange through the ASGI application: (status, headers, body)."""
        path, _, query = target.partition("?")
        sent = {name.lower(): value for name, value in headers.items()}
        sent.setdefault("host", HOST)
        if body or method == "POST":
            sent["content-length"] = str(len(body))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in sent.items()],
            "client": ("127.0.0.1", 50000),
            "server": (HOST, 80),
        }
        answered = asyncio.Event()
        delivered = False
        status = 0
        from tornado.httputil import HTTPHeaders  # the client's header type; the server loads Tornado anyway

        answer_headers = HTTPHeaders()
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # the client stays until the whole answer is in
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    answer_headers.add(name.decode("latin-1"), value.decode("latin-1"))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body"):
                    answered.set()

        await self.app(scope, receive, send)
        answered.set()
        return status, answer_headers, b"".join(chunks)


def _attach(
    client: Any, init: Callable[..., None], app_server: InProcessServer, client_hmac_mode: str | None, **kw: Any
) -> None:
    """Make ``client`` (a TestClient or AsyncTestClient, ``init`` its base's) a client of ``app_server``,
    signing as the server's ``hmac_mode`` unless ``client_hmac_mode`` says otherwise."""
    client.app_server = app_server
    client.server = app_server.server
    mode = client_hmac_mode or str(app_server.server.options.hmac_mode)
    init(client, app_server.url, hmac_mode=mode, **kw)


class AsyncTestClient(AsyncTotoClient):
    """``AsyncTotoClient``'s interface on an in-process server (see the module's text)."""

    __test__ = False  # a class pytest must not collect, whatever the test module imports

    app_server: InProcessServer
    #: The ``TotoServer`` under test (its options, storage, sessions).
    server: TotoServer

    def __init__(
        self,
        conf_file: str | None = None,
        *,
        client_hmac_mode: str | None = None,
        serializer: str = "json",
        accept: str | None = None,
        retries: int = 0,
        **options: Any,
    ) -> None:
        _attach(
            self,
            AsyncTotoClient.__init__,
            InProcessServer(conf_file, options),
            client_hmac_mode,
            serializer=serializer,
            accept=accept,
            retries=retries,
        )

    def client(self, **kw: Any) -> AsyncTestClient:
        """Another client of the same in-process server, with a session of its own."""
        other = AsyncTestClient.__new__(AsyncTestClient)
        _attach(
            other, AsyncTotoClient.__init__, self.app_server, kw.pop("client_hmac_mode", None), **{"retries": 0, **kw}
        )
        return other

    async def __aenter__(self) -> AsyncTestClient:
        await self.app_server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app_server.stop()

    async def request(
        self,
        body: bytes = b"",
        path: str = "/",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        sign: bool = True,
    ) -> tuple[int, Any, bytes]:
        """Send raw bytes; returns (status, headers, body) without checking anything."""
        target, all_headers = self._prepare(method, path, body, content_type, headers, sign)
        sent = body if method not in ("GET", "HEAD") else b""
        return await self.app_server.request(method, target, all_headers, sent)

    async def connect(self, path: str = "websocket", binary: bool = False) -> Any:
        raise TypeError("AsyncTestClient serves HTTP in memory only; test WebSockets with toto.testing.ServerProcess")


class TestClient(TotoClient):
    """``TotoClient``'s interface on an in-process server (see the module's text)."""

    __test__ = False  # a class pytest must not collect, whatever the test module imports

    app_server: InProcessServer
    #: The ``TotoServer`` under test (its options, storage, sessions).
    server: TotoServer

    def __init__(
        self,
        conf_file: str | None = None,
        *,
        client_hmac_mode: str | None = None,
        serializer: str = "json",
        accept: str | None = None,
        retries: int = 0,
        **options: Any,
    ) -> None:
        _attach(
            self,
            TotoClient.__init__,
            InProcessServer(conf_file, options),
            client_hmac_mode,
            serializer=serializer,
            accept=accept,
            retries=retries,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._owner: TestClient | None = None

    def client(self, **kw: Any) -> TestClient:
        """Another client of the same in-process server, with a session of its own (a second
        user, say); ``client_hmac_mode``, ``serializer``, ``accept`` and ``retries`` as above."""
        other = TestClient.__new__(TestClient)
        _attach(other, TotoClient.__init__, self.app_server, kw.pop("client_hmac_mode", None), **{"retries": 0, **kw})
        other._loop, other._thread, other._owner = None, None, self
        return other

    def __enter__(self) -> TestClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server on an event loop of its own thread (``with`` does it)."""
        if self._loop is not None or self._owner is not None:
            return
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="toto-test-client", daemon=True)
        self._thread.start()
        try:
            self._run(self.app_server.start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the server and its loop (``with`` does it)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self.app_server.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = None

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        loop = self._owner._loop if self._owner is not None else self._loop
        if loop is None:
            work.close()
            raise RuntimeError("the TestClient is not started: use `with TestClient(...) as client:`")
        return asyncio.run_coroutine_threadsafe(work, loop).result()

    def request(
        self,
        body: bytes = b"",
        path: str = "/",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        sign: bool = True,
    ) -> tuple[int, Any, bytes]:
        """Send raw bytes; returns (status, headers, body) without checking anything."""
        target, all_headers = self._prepare(method, path, body, content_type, headers, sign)
        sent = body if method not in ("GET", "HEAD") else b""
        return self._run(self.app_server.request(method, target, all_headers, sent))
