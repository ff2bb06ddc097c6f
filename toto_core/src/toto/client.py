"""Python clients for Toto servers: ``TotoClient`` (blocking) and ``AsyncTotoClient``.

Both sign requests with the client half of the ``hmac_mode``'s authenticator (any
installed scheme, a plugin's included), verify response signatures (a bad one raises
``TotoClientError`` with code 1009) and keep the session between calls.
"""

from __future__ import annotations

import asyncio
import http.client
import random
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from toto.auth import Authenticator

# The client's choices and its error live in toto.clientsetup (shared with the socket client)
# and keep their names here.
from toto.clientsetup import JSON
from toto.clientsetup import TotoClientError as TotoClientError
from toto.clientsetup import find_authenticator as find_authenticator
from toto.clientsetup import find_serializer as find_serializer
from toto.clientsetup import has_client_half as has_client_half
from toto.clientsetup import installed_authenticators as installed_authenticators
from toto.clientsetup import installed_serializers as installed_serializers
from toto.exceptions import ERROR_MALFORMED_REQUEST, ERROR_SERVICE_UNAVAILABLE, TotoException
from toto.serializers import Serializer

if TYPE_CHECKING:
    from toto.socketclient import TotoSocket


class _ClientCore:
    """What both clients share: building and signing requests, reading and verifying answers.

    ``serializer`` is the wire format of requests, by name (``json``, ``msgpack``),
    content type or ``Serializer`` instance. Answers are read in whatever installed
    type the server sent; ``accept`` asks for another type than ``serializer``'s.

    A call the server answers with 1013 (HTTP 503: busy or its storage unreachable; the
    call did not run) is sent again, signed anew, up to ``retries`` times, after the
    answer's ``Retry-After`` or a backoff of 1, 2, 4... seconds, whichever is longer (capped at
    ``MAX_RETRY_DELAY``, with jitter so that clients refused together do not return
    together). ``request`` sends once: it is for raw exchanges.
    """

    #: The longest wait between two tries of a call, whatever Retry-After says.
    MAX_RETRY_DELAY = 30.0

    def __init__(
        self,
        url: str,
        hmac_mode: str | Authenticator = "user_id",
        serializer: str | Serializer = "json",
        timeout: float = 10.0,
        accept: str | None = None,
        retries: int = 3,
    ) -> None:
        self.authenticator = find_authenticator(hmac_mode)
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.serializer = find_serializer(serializer)
        self.content_type = self.serializer.content_types[0]
        self.accept = accept or self.content_type
        self.timeout = timeout
        self.retries = retries
        self.session: dict[str, Any] | None = None

    # -- building requests ------------------------------------------------------------
    def _target(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return (self.base_path + path) or "/"

    def _prepare(
        self,
        http_method: str,
        path: str,
        body: bytes,
        content_type: str | None,
        extra: dict[str, str] | None,
        sign: bool,
    ) -> tuple[str, dict[str, str]]:
        """The request target and headers of one request: content type, Accept, session and signature.

        ``sign=False`` sends only ``extra`` (raw requests of tests and tools).
        """
        target = self._target(path)
        headers: dict[str, str] = {}
        if sign:
            headers["Content-Type"] = self.content_type
            headers["Accept"] = self.accept
            session = self.session
            if session and session.get("session_id"):
                headers["x-toto-session-id"] = session["session_id"]
                headers.update(self.authenticator.sign_request(session, http_method, target, body))
        if content_type is not None:
            headers["Content-Type"] = content_type
        if extra:
            headers.update(extra)
        return target, headers

    def _body(self, method: str, parameters: Any) -> bytes:
        return self.serializer.encode({"method": method, "parameters": {} if parameters is None else parameters})

    # -- reading answers --------------------------------------------------------------
    def _decode(self, status: int, headers: Any, body: bytes) -> dict[str, Any]:
        try:
            envelope = self._serializer_for(headers).decode(body)
        except Exception:
            raise TotoClientError(
                ERROR_MALFORMED_REQUEST, f"HTTP {status}: unreadable answer {body[:200]!r}", status=status
            ) from None
        if not isinstance(envelope, dict):
            raise TotoClientError(ERROR_MALFORMED_REQUEST, f"HTTP {status}: answer is not an object", status=status)
        self._verify(headers, body, envelope)
        session = envelope.get("session")
        if isinstance(session, dict):
            key = self._session_key(envelope, session)
            self.session = dict(session, key=key) if key else dict(session)
        return envelope

    def _retry_delay(self, attempt: int, status: int, headers: Any, envelope: dict[str, Any]) -> float | None:
        """Seconds to wait before sending a call again, or None when its answer is final."""
        error = envelope.get("error")
        if attempt >= self.retries or status != 503 or not isinstance(error, dict):
            return None
        if error.get("code") != ERROR_SERVICE_UNAVAILABLE:
            return None
        try:
            asked = float(headers.get("Retry-After") or 0)
        except ValueError:  # an HTTP date: not what Toto sends; the backoff decides
            asked = 0.0
        # At least a second, then doubling: the server said it cannot take the call right now.
        delay = min(self.MAX_RETRY_DELAY, max(asked, 2.0**attempt))
        return delay * random.uniform(1.0, 1.5)  # noqa: S311  (jitter, no secret)

    def _session_key(self, envelope: dict[str, Any], session: dict[str, Any]) -> str | None:
        """The session-key-mode key of the answer's session: new from a login, else the one kept."""
        result = envelope.get("result")
        if isinstance(result, dict) and result.get("key") and result.get("session_id") == session.get("session_id"):
            return str(result["key"])
        if self.session and self.session.get("session_id") == session.get("session_id"):
            return self.session.get("key")
        return None

    def _serializer_for(self, headers: Any) -> Serializer:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not content_type or content_type in self.serializer.content_types:
            return self.serializer
        if content_type == "application/json":
            return JSON
        try:
            return installed_serializers().get(content_type, self.serializer)
        except Exception:  # a broken plugin set must not hide the answer's own error
            return self.serializer

    def _verify(self, headers: Any, body: bytes, envelope: dict[str, Any]) -> None:
        session = envelope.get("session")
        if not isinstance(session, dict):
            return
        key = self._session_key(envelope, session)
        try:
            self.authenticator.verify_response(dict(session, key=key) if key else session, headers, body)
        except TotoException as exc:
            raise TotoClientError(exc.code, exc.value) from None

    @staticmethod
    def _result(envelope: dict[str, Any], status: int) -> Any:
        error = envelope.get("error")
        if error is not None:
            raise TotoClientError(error.get("code"), error.get("value"), status=status)
        return envelope.get("result")

    @staticmethod
    def _batch_results(envelope: dict[str, Any]) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for key, entry in (envelope.get("batch") or {}).items():
            if "error" in entry:
                answers[key] = TotoClientError(entry["error"].get("code"), entry["error"].get("value"))
            else:
                answers[key] = entry.get("result")
        return answers

    @staticmethod
    def _get_path(method: str, query: dict[str, Any]) -> str:
        return "/" + method.replace(".", "/") + ("?" + urlencode(query, doseq=True) if query else "")

    @staticmethod
    def _batch_body(calls: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        return {"batch": {k: {"method": m, "parameters": {} if p is None else p} for k, (m, p) in calls.items()}}


class TotoClient(_ClientCore):
    """A blocking client that keeps one HTTP connection alive. Not thread-safe."""

    def __init__(
        self,
        url: str,
        hmac_mode: str | Authenticator = "user_id",
        serializer: str | Serializer = "json",
        timeout: float = 10.0,
        accept: str | None = None,
        retries: int = 3,
    ) -> None:
        super().__init__(url, hmac_mode, serializer, timeout, accept, retries)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> TotoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, target, body=body if method not in ("GET", "HEAD") else None, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.headers, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, body: bytes, path: str = "/", http_method: str = "POST") -> tuple[dict[str, Any], int]:
        attempt = 0
        while True:
            status, headers, data = self.request(body, path, method=http_method)  # signed anew each time
            envelope = self._decode(status, headers, data)
            delay = self._retry_delay(attempt, status, headers, envelope)
            if delay is None:
                return envelope, status
            time.sleep(delay)
            attempt += 1

    def call(self, method: str, parameters: Any = None) -> Any:
        envelope, status = self._exchange(self._body(method, parameters))
        return self._result(envelope, status)

    def get(self, method: str, **query: str) -> Any:
        """Call ``method`` as ``GET /a/b/c?name=value`` (parameters are strings)."""
        envelope, status = self._exchange(b"", self._get_path(method, query), "GET")
        return self._result(envelope, status)

    def batch(self, calls: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        envelope, status = self._exchange(self.serializer.encode(self._batch_body(calls)))
        self._result(envelope, status)
        return self._batch_results(envelope)

    def create(self, user_id: str, password: str, **fields: Any) -> dict[str, Any]:
        return self.call("account.create", dict(fields, user_id=user_id, password=password))  # type: ignore[no-any-return]

    def login(self, user_id: str, password: str) -> dict[str, Any]:
        return self.call("account.login", {"user_id": user_id, "password": password})  # type: ignore[no-any-return]

    def logout(self) -> Any:
        try:
            return self.call("account.logout")
        finally:
            self.session = None


class AsyncTotoClient(_ClientCore):
    """The same client for asyncio code, on Tornado's HTTP client."""

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
        # Tornado's HTTP client, for the async client only: TotoClient and toto call load no Tornado.
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        target, all_headers = self._prepare(method, path, body, content_type, headers, sign)
        request = HTTPRequest(
            f"{self.scheme}://{self.host}:{self.port}{target}",
            method=method,
            body=body if method == "POST" else None,
            headers=all_headers,
            request_timeout=self.timeout,
            allow_nonstandard_methods=True,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599 and response.error is not None:
            raise response.error
        return response.code, response.headers, response.body or b""

    async def _exchange(self, body: bytes, path: str = "/", http_method: str = "POST") -> tuple[dict[str, Any], int]:
        attempt = 0
        while True:
            status, headers, data = await self.request(body, path, method=http_method)  # signed anew each time
            envelope = self._decode(status, headers, data)
            delay = self._retry_delay(attempt, status, headers, envelope)
            if delay is None:
                return envelope, status
            await asyncio.sleep(delay)
            attempt += 1

    async def call(self, method: str, parameters: Any = None) -> Any:
        envelope, status = await self._exchange(self._body(method, parameters))
        return self._result(envelope, status)

    async def get(self, method: str, **query: str) -> Any:
        """Call ``method`` as ``GET /a/b/c?name=value`` (parameters are strings)."""
        envelope, status = await self._exchange(b"", self._get_path(method, query), "GET")
        return self._result(envelope, status)

    async def batch(self, calls: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        envelope, status = await self._exchange(self.serializer.encode(self._batch_body(calls)))
        self._result(envelope, status)
        return self._batch_results(envelope)

    async def create(self, user_id: str, password: str, **fields: Any) -> dict[str, Any]:
        return await self.call("account.create", dict(fields, user_id=user_id, password=password))  # type: ignore[no-any-return]

    async def login(self, user_id: str, password: str) -> dict[str, Any]:
        return await self.call("account.login", {"user_id": user_id, "password": password})  # type: ignore[no-any-return]

    async def logout(self) -> Any:
        try:
            return await self.call("account.logout")
        finally:
            self.session = None

    async def connect(self, path: str = "websocket", binary: bool = False) -> TotoSocket:
        """A WebSocket to ``<url>/<path>`` (the server's ``socket_path``) with this client's
        session and signing: ``call``, ``batch``, ``subscribe`` (``toto.socketclient``).
        ``binary=True`` sends msgpack frames (toto-msgpack installed)."""
        # Tornado's WebSocket client loads when a socket is opened, not with every HTTP client.
        from toto.socketclient import connect

        return await connect(self, path, binary)
