"""The Python client's WebSocket half: ``await AsyncTotoClient(url).connect()``.

One connection carries many calls at once (answers are matched by id), batches, and
event pushes. Every call is signed for the client's session by the message half of the
client's ``hmac_mode`` (``user_id``, ``session_key``, ``off`` or a plugin's) as README
"WebSockets" describes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from toto.clientsetup import JSON, TotoClientError, find_serializer
from toto.eventbus import Position
from toto.exceptions import ERROR_MALFORMED_REQUEST, TotoException

if TYPE_CHECKING:
    from toto.client import AsyncTotoClient

#: Raised on calls of a socket the server closed: code is the close code (1001, 1008, 1009, 1013...).
ERROR_SOCKET_CLOSED = 1006


class SocketClosed(TotoException):
    """The socket is closed; ``code`` is the WebSocket close code, ``value`` the reason."""


class TotoSocket:
    """A connected socket of an ``AsyncTotoClient``: ``call``, ``batch``, ``subscribe``.

    Pushes of subscribed events go to the callback given to ``subscribe``, or else wait in
    ``next_event()``. ``close()`` ends the socket; ``close_code``/``close_reason`` tell why
    the server ended it.

    The socket remembers ``position``, the newest event position it saw (README
    "WebSockets", recovery). After the connection is lost, ``reconnect()`` opens a new one
    and subscribes again to the same events from that position: the server first pushes
    what the socket missed, from its bus's history, then live events. ``recovered`` tells
    whether that was all it missed; when it is False there was a gap (the bus keeps no
    history, or the position is too old or of another epoch), and ``on_gap`` (when set) is
    called with the subscription's answer.
    """

    def __init__(
        self, client: AsyncTotoClient, connection: WebSocketClientConnection, binary: bool, path: str = "websocket"
    ) -> None:
        self.client = client
        self.connection = connection
        self.binary = binary
        self.path = path
        #: The newest event position seen (pushes and subscription answers), or None.
        self.position: Position | None = None
        #: Whether the latest ``reconnect()`` recovered everything missed (None before any).
        self.recovered: bool | None = None
        #: Called with the subscription's answer when a ``reconnect()`` finds a gap.
        self.on_gap: Callable[[dict[str, Any]], Any] | None = None
        self._subscribed: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._callbacks: dict[str, Callable[[Any], Any]] = {}
        self._events: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._tasks: set[asyncio.Future[Any]] = set()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        if binary:
            self._serializer = find_serializer("msgpack")
        else:
            self._serializer = JSON
        self._reader = asyncio.ensure_future(self._read())

    # -- calling ------------------------------------------------------------------------------
    async def call(self, method: str, parameters: Any = None) -> Any:
        """Call ``method``; its result, or ``TotoClientError`` with the error's code."""
        answer = await self._send({"method": method, "parameters": {} if parameters is None else parameters})
        self._follow_session(method, answer.get("result"))
        return self._result(answer)

    async def batch(self, calls: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        """Several calls in one message: each id's result, or its ``TotoClientError``."""
        batch = {k: {"method": m, "parameters": {} if p is None else p} for k, (m, p) in calls.items()}
        answer = await self._send({"batch": batch})
        self._result(answer)
        results: dict[str, Any] = {}
        for key, entry in (answer.get("batch") or {}).items():
            if "error" in entry:
                results[key] = TotoClientError(entry["error"].get("code"), entry["error"].get("value"))
            else:
                results[key] = entry.get("result")
                self._follow_session(calls[key][0], entry.get("result"))
        return results

    async def subscribe(self, *events: str, callback: Callable[[Any], Any] | None = None) -> list[str]:
        """Receive pushes of ``events``: ``callback(data)`` each, or through ``next_event()``.
        Answers every event name the socket is subscribed to."""
        for event in events:
            if callback is not None:
                self._callbacks[event] = callback
        result = await self.call("toto.subscribe", {"events": list(events), "recover": True})
        self._subscribed = list(result["subscribed"])
        self._advance(result.get("position"))
        return list(result["subscribed"])

    async def unsubscribe(self, *events: str) -> list[str]:
        """Stop the pushes of ``events`` (none named: of all)."""
        for event in events or list(self._callbacks):
            self._callbacks.pop(event, None)
        result = await self.call("toto.unsubscribe", {"events": list(events)} if events else {})
        self._subscribed = list(result["subscribed"])
        return list(result["subscribed"])

    async def reconnect(self) -> bool:
        """Open a new connection in place of a lost one (closing this one if it is still
        open) and subscribe again to the events this socket had, from ``position``: what
        was missed arrives first, then live events. Answers ``recovered`` (False: a gap)."""
        if self.close_code is None:
            await self.close()
        self.connection = await _open(self.client, self.path)
        self.close_code = self.close_reason = None
        kept = []  # pushes not read yet stay; the end-of-socket marker goes
        while not self._events.empty():
            item = self._events.get_nowait()
            if item is not None:
                kept.append(item)
        for item in kept:
            self._events.put_nowait(item)
        self._reader = asyncio.ensure_future(self._read())
        if not self._subscribed:
            self.recovered = True
            return True
        parameters: dict[str, Any] = {"events": list(self._subscribed), "recover": True}
        if self.position is not None:
            parameters["since"] = {"epoch": self.position.epoch, "seq": self.position.seq}
        result = await self.call("toto.subscribe", parameters)
        self._subscribed = list(result["subscribed"])
        self._advance(result.get("position"))
        self.recovered = bool(result.get("recovered", self.position is None))
        if not self.recovered and self.on_gap is not None:
            outcome = self.on_gap(result)
            if asyncio.iscoroutine(outcome):
                await outcome
        return self.recovered

    def _advance(self, frame: Any) -> None:
        """Remember ``frame``'s position when it is newer than the one remembered."""
        if not isinstance(frame, dict):
            return
        epoch, seq = frame.get("epoch"), frame.get("seq")
        if not isinstance(epoch, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return
        position = Position(epoch, seq)
        if position.follows(self.position):
            self.position = position

    async def next_event(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next pushed ``(event, data)`` that no callback took."""
        if self._events.empty() and self.close_code is not None:
            raise SocketClosed(self.close_code or ERROR_SOCKET_CLOSED, self.close_reason)
        item = await asyncio.wait_for(self._events.get(), timeout)
        if item is None:  # put there when the socket closed
            self._events.put_nowait(None)
            raise SocketClosed(self.close_code or ERROR_SOCKET_CLOSED, self.close_reason)
        return item

    async def wait_closed(self, timeout: float | None = None) -> tuple[int | None, str | None]:
        """Wait until the socket is closed (by either side): its close code and reason."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code, self.close_reason

    async def login(self, user_id: str, password: str) -> dict[str, Any]:
        return await self.call("account.login", {"user_id": user_id, "password": password})  # type: ignore[no-any-return]

    async def create(self, user_id: str, password: str, **fields: Any) -> dict[str, Any]:
        return await self.call("account.create", dict(fields, user_id=user_id, password=password))  # type: ignore[no-any-return]

    async def logout(self) -> Any:
        """Ends the session; the server then closes the socket (1008 "session ended")."""
        try:
            return await self.call("account.logout")
        finally:
            self.client.session = None

    async def close(self) -> None:
        self.connection.close()
        await asyncio.wait([self._reader], timeout=5)

    async def __aenter__(self) -> TotoSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the wire ---------------------------------------------------------------------------------
    def encode(self, message: dict[str, Any]) -> str | bytes:
        """The frame of ``message``, signed for the client's session by its authenticator's
        message half (README "WebSockets")."""
        session = self.client.session
        auth = self.client.authenticator
        if session is not None:
            message = auth.prepare_message(session, message)
        data = self._serializer.encode(message)
        signature = auth.sign_message(session, message, data) if session is not None else None
        if signature is not None:
            data = self._serializer.add_signature(data, message, signature)
        return data if self.binary else data.decode("utf-8")

    async def _send(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.close_code is not None:
            raise SocketClosed(self.close_code, self.close_reason)
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self.connection.write_message(self.encode({"id": msg_id, **message}), binary=self.binary)
            return await asyncio.wait_for(asyncio.shield(future), self.client.timeout)
        finally:
            self._pending.pop(msg_id, None)

    async def _read(self) -> None:
        while True:
            frame = await self.connection.read_message()
            if frame is None:
                break
            try:
                data = frame.encode("utf-8") if isinstance(frame, str) else frame
                message = (self._serializer if isinstance(frame, bytes) else JSON).decode(data)
            except Exception:  # noqa: S112 - an unreadable frame answers no call: skip it
                continue
            if not isinstance(message, dict):
                continue
            if "event" in message and "id" not in message:
                event = message["event"]
                self._advance(message.get("position"))
                callback = self._callbacks.get(event)
                if callback is not None:
                    result = callback(message.get("data"))
                    if asyncio.iscoroutine(result):
                        task = asyncio.ensure_future(result)
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                else:
                    self._events.put_nowait((event, message.get("data")))
                continue
            future = self._pending.get(message.get("id"))
            if future is not None and not future.done():
                future.set_result(message)
        self.close_code = self.connection.close_code or ERROR_SOCKET_CLOSED
        self.close_reason = self.connection.close_reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SocketClosed(self.close_code, self.close_reason))
        self._events.put_nowait(None)

    def _follow_session(self, method: str, result: Any) -> None:
        """After a login or an account creation the socket runs with the new session."""
        if method in ("account.login", "account.create") and isinstance(result, dict) and result.get("session_id"):
            self.client.session = {k: result[k] for k in ("session_id", "expires", "user_id", "key") if k in result}

    @staticmethod
    def _result(answer: dict[str, Any]) -> Any:
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise TotoClientError(ERROR_MALFORMED_REQUEST, error)
            raise TotoClientError(int(error.get("code") or 0), error.get("value"))
        return answer.get("result")


async def connect(client: AsyncTotoClient, path: str = "websocket", binary: bool = False) -> TotoSocket:
    """Open ``<client url>/<path>`` as a WebSocket, naming the client's session."""
    return TotoSocket(client, await _open(client, path), binary, path)


async def _open(client: AsyncTotoClient, path: str) -> WebSocketClientConnection:
    scheme = "wss" if client.scheme == "https" else "ws"
    target = client._target(path)
    headers = {}
    if client.session and client.session.get("session_id"):
        headers["x-toto-session-id"] = client.session["session_id"]
    request = HTTPRequest(
        f"{scheme}://{client.host}:{client.port}{target}", headers=headers, connect_timeout=client.timeout
    )
    return await websocket_connect(request, max_message_size=64 * 1024 * 1024)
