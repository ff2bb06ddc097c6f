"""The HTTP answer's plumbing: headers, status and body as a Tornado ``RequestHandler`` writes
them (the calls raw answers use), sent through the transport's ``ResponseWriter``.

``TotoHandler`` (``toto.handler``) is an ``HttpResponse``; a transport gives it a
``ResponseWriter`` and reads nothing else of it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from collections.abc import Awaitable, Callable
from http.client import responses
from typing import TYPE_CHECKING, Any, Protocol

from tornado import httputil

if TYPE_CHECKING:
    from tornado.httputil import HTTPServerRequest

_UNSAFE_HEADER = re.compile(r"[\x00-\x1f]")


class ResponseHeaders(dict):  # type: ignore[type-arg]
    """Response headers by canonical name, in the shape ``HTTP1Connection.write_headers`` reads.

    Built by copying a ready dict, which is cheaper than ``HTTPHeaders``; headers added
    with ``add_header`` (several values of one name) follow the others.
    """

    extra: list[tuple[str, str]] | None = None

    def get_all(self) -> Any:
        if self.extra:
            return [*self.items(), *self.extra]
        return self.items()


_canonical_names: dict[str, str] = {}


def canonical_header(name: str) -> str:
    """``content-type`` -> ``Content-Type`` (cached; header names are case-insensitive)."""
    found = _canonical_names.get(name)
    if found is None:
        found = "-".join(part.capitalize() for part in name.split("-"))
        if len(_canonical_names) < 1000:
            _canonical_names[name] = found
    return found


def header_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, int):
        return str(value)
    elif isinstance(value, datetime.datetime):
        return httputil.format_timestamp(value)
    else:
        raise TypeError(f"Unsupported header value {value!r}")
    if _UNSAFE_HEADER.search(text):
        raise ValueError("Unsafe header value: control characters are not allowed")
    return text


class ResponseWriter(Protocol):
    """What a transport gives the request path to send one answer (``toto.transports``).

    ``start`` sends the status line, headers and the first bytes of the body (nothing
    of the body for HEAD: the path passes ``b""`` then); ``last`` says the answer ends
    there. ``send`` sends more of a body that was started without ``last`` (``flush``).
    Both return what to await for the bytes to leave, or None when nothing need be.
    ``watch(callback)``: call ``callback`` once if the client goes away before the answer
    ends (None: stop watching); the path asks only of answers that wait on something.
    """

    def start(self, status: int, reason: str, headers: ResponseHeaders, chunk: bytes, last: bool) -> Any: ...

    def send(self, chunk: bytes, last: bool) -> Any: ...

    def watch(self, callback: Callable[[], None] | None) -> None: ...


class HttpResponse:
    """The response half of ``TotoHandler``: ``set_header``, ``add_header``, ``clear_header``,
    ``set_status``, ``get_status``, ``write``, ``flush``, ``finish``, ``clear``, ``send_error``."""

    if TYPE_CHECKING:
        request: HTTPServerRequest
        application: Any
        _writer: ResponseWriter
        _headers: ResponseHeaders
        _write_buffer: list[bytes]
        _status_code: int
        _reason: str
        _finished: bool
        _headers_written: bool
        _observed_since: float | None
        _watching: bool

        def _report_finished(self, status: int, started: float) -> None: ...
        def on_finish(self) -> None: ...
        def write_error(self, status_code: int, **kwargs: Any) -> None: ...

    def set_header(self, name: str, value: Any) -> None:
        self._headers[canonical_header(name)] = header_value(value)

    def add_header(self, name: str, value: Any) -> None:
        headers = self._headers
        if headers.extra is None:
            headers.extra = []
        headers.extra.append((canonical_header(name), header_value(value)))

    def clear_header(self, name: str) -> None:
        self._headers.pop(canonical_header(name), None)

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        self._status_code = status_code
        self._reason = reason if reason is not None else responses.get(status_code, "Unknown")

    def get_status(self) -> int:
        return self._status_code

    def write(self, chunk: bytes | str | dict[str, Any]) -> None:
        if self._finished:
            raise RuntimeError("Cannot write() after finish()")
        if isinstance(chunk, dict):
            chunk = json.dumps(chunk).replace("</", "<\\/")
            self._headers["Content-Type"] = "application/json; charset=UTF-8"
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        elif not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() only accepts bytes, str and dict, not {type(chunk).__name__}")
        self._write_buffer.append(bytes(chunk))

    def flush(self) -> Awaitable[None]:
        """Send what was written so far (the headers first; then the body is chunked)."""
        return awaitable_of(self._send(False))

    def _send(self, last: bool) -> Any:
        buffer = self._write_buffer
        chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        self._write_buffer = []
        head = self.request.method == "HEAD"
        if not self._headers_written:
            self._headers_written = True
            return self._writer.start(self._status_code, self._reason, self._headers, b"" if head else chunk, last)
        if head and not last:
            return None
        return self._writer.send(b"" if head else chunk, last)

    def finish(self, chunk: bytes | str | dict[str, Any] | None = None) -> Awaitable[None]:
        """End the response (writing ``chunk`` first)."""
        return awaitable_of(self._finish(chunk))

    def _finish(self, chunk: bytes | str | dict[str, Any] | None = None) -> Any:
        """``finish`` without its awaitable: what the transport's ``start`` or ``send`` gave
        (the request path's own answers never await it)."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            if type(chunk) is bytes:  # the envelope, encoded: nothing of write()'s to check
                self._write_buffer.append(chunk)
            else:
                self.write(chunk)
        if not self._headers_written:
            status = self._status_code
            if status in (204, 304) or 100 <= status < 200:
                if self._write_buffer:
                    raise RuntimeError(f"Cannot send body with status code HTTP{status}")
                for name in ("Content-Encoding", "Content-Language", "Content-Type"):
                    self._headers.pop(name, None)
            elif "Content-Length" not in self._headers:
                buffer = self._write_buffer
                self._headers["Content-Length"] = str(
                    len(buffer[0]) if len(buffer) == 1 else sum(len(part) for part in buffer)
                )
        if self._observed_since is not None:
            self._report_finished(self._status_code, self._observed_since)
        if self._watching:
            self._watching = False
            self._writer.watch(None)
        sent = self._send(True)
        self._finished = True
        self.on_finish()
        return sent

    def clear(self) -> None:
        """Forget the headers, body and status written so far."""
        self._headers = ResponseHeaders(self.application.default_headers())
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Answer ``status_code`` in the protocol's error shape (see ``write_error``)."""
        if self._headers_written:
            if not self._finished:
                self.finish()
            return
        self.clear()
        self.set_status(status_code, kwargs.get("reason"))
        self.write_error(status_code, **kwargs)


_done: asyncio.Future[None] | None = None


def awaitable_of(sent: Any) -> Awaitable[None]:
    """What ``flush`` and ``finish`` return: the transport's awaitable, or one already done
    (one per event loop, shared: a done future can be awaited any number of times)."""
    global _done
    if sent is not None:
        return sent  # type: ignore[no-any-return]
    loop = asyncio.get_running_loop()
    done = _done
    if done is None or done.get_loop() is not loop:
        done = _done = loop.create_future()
        done.set_result(None)
    return done
