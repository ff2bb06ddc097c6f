"""Sending fuzzed requests and judging the answers: what "in the protocol's shape" means."""

from __future__ import annotations

import collections
import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import bson
import msgpack

#: Statuses a Toto answer may have (PROTOCOL.md section 2, issue 13): no 5xx but 503.
STATUSES = {200, 204, 400, 404, 405, 413, 414, 415, 431, 503}
#: Codes a built-in answer may carry, and the application codes of the test app's methods.
CODES = set(range(1000, 1019)) | {4242}


@dataclass
class Sent:
    """What a run threw at the server."""

    inputs: int = 0
    tracebacks: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def rss_bytes(pid: int) -> int:
    return _status(pid, "VmRSS")


def reset_peak_rss(pid: int) -> int:
    """Start measuring the peak memory of ``pid`` afresh (Linux's clear_refs); returns its memory now."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    return _status(pid, "VmRSS")


def peak_rss_since(pid: int, before: int) -> int:
    """How far the memory of ``pid`` rose above ``before`` since ``reset_peak_rss``."""
    return _status(pid, "VmHWM") - before


def _strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"the answer holds {name}, which JSON.parse rejects")

    return json.loads(data, parse_constant=refuse)


def decode_answer(content_type: str, data: bytes) -> Any:
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json":
        assert data.isascii(), "JSON answers are ASCII-only"
        return _strict_json(data)
    if mime in ("application/msgpack", "application/x-msgpack"):
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    if mime == "application/bson":
        return bson.decode(data)
    raise AssertionError(f"an answer of content type {content_type!r}")


def check_envelope(envelope: Any, batch_entry: bool = False) -> None:
    assert isinstance(envelope, dict), envelope
    allowed = {"result", "error"} if batch_entry else {"result", "error", "batch", "session"}
    assert set(envelope) <= allowed, envelope
    if "error" in envelope:
        error = envelope["error"]
        assert isinstance(error, dict) and set(error) == {"code", "value"}, error
        assert error["code"] in CODES, error
        if error["code"] == 1000:
            # The one server error a client can cause: an answer its Accept cannot carry.
            assert error["value"] == "The result could not be serialized.", error
    if "batch" in envelope:
        assert isinstance(envelope["batch"], dict)
        for entry in envelope["batch"].values():
            check_envelope(entry, batch_entry=True)


def check_answer(status: int, headers: Any, data: bytes, verb: str) -> None:
    assert status in STATUSES, (status, data[:300])
    if verb == "HEAD" or status == 204:
        return
    content_type = headers.get("Content-Type", "")
    check_envelope(decode_answer(content_type, data))


class Wire:
    """One client of the fuzzed server: a kept-alive connection, reopened when the server closes it."""

    def __init__(self, port: int, sent: Sent) -> None:
        self.port = port
        self.sent = sent
        self.conn: http.client.HTTPConnection | None = None

    def send(self, verb: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        self.sent.inputs += 1
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(verb, target, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close" or response.will_close:
                self.close()
            self.sent.statuses[response.status] += 1
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def send_raw(self, data: bytes) -> bytes:
        """Bytes straight onto a new connection; the first answer that came back (or what
        came before the server closed the connection)."""
        self.sent.inputs += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = b""
            while not _complete(answer):
                try:
                    part = sock.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    break
                if not part:
                    break
                answer += part
        return answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _complete(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole HTTP answer (its head and Content-Length bytes of body)."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True
