"""One log line per request (logger ``toto.access``, level info), and JSON log lines.

``access_log`` (on by default) turns the line on; it is written only when info is
enabled, which the server decides once at startup, so a server logging at ``warning``
pays one attribute check per request. ``log_format=json`` makes every log record,
these included, one JSON object a line.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toto.handler import TotoHandler

log = logging.getLogger("toto.access")

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes in the JSON.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class AccessLog:
    """Writes the access line of each finished request."""

    def record(self, handler: TotoHandler, closed: bool = False) -> None:
        request = handler.request
        methods = handler.active_methods
        if methods:
            name = methods[0].name if len(methods) == 1 else ",".join(m.name for m in methods)
        else:
            name = handler.called_name()
        session = handler.session
        user = session.user_id if session is not None else None
        status = 499 if closed else handler.get_status()  # 499: the client closed the connection first
        codes = _error_codes(handler.payload)
        duration = request.request_time() * 1000.0
        log.info(
            "%s %s %s %d %s %.2fms %s",
            request.method,
            request.path,
            name,
            status,
            ",".join(map(str, codes)) if codes else "-",
            duration,
            user if user is not None else "-",
            extra={
                "http_method": request.method,
                "path": request.path,
                "method": name,
                "status": status,
                "error_code": (codes[0] if len(codes) == 1 else codes) if codes else None,
                "duration_ms": round(duration, 3),
                "user_id": user,
                "remote_ip": request.remote_ip,
            },
        )


def _error_codes(payload: dict[str, Any] | None) -> list[Any]:
    if not payload:
        return []
    error = payload.get("error")
    if error is not None:
        return [error.get("code")]
    batch = payload.get("batch")
    if batch:
        return [entry["error"].get("code") for entry in batch.values() if "error" in entry]
    return []


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
