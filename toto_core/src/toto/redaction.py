"""Secrets kept out of logs: the values of secret-named query parameters (``?password=...``).

A method called by GET takes its parameters from the query string, so a request target
can hold a password, a key or a session id; every log line that names a request target
writes it through ``redact_target``, and ``RedactingFilter`` (installed on the server's
log handler) redacts what any other logger writes, tracebacks included.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

#: Parameter names whose values never reach a log (compared lower-cased), and the parts
#: that make any name secret (``confirm_password``, ``api_token``, ``client_secret``).
SECRET_NAMES = frozenset(
    {
        "password",
        "new_password",
        "old_password",
        "passwd",
        "pwd",
        "key",
        "session_key",
        "api_key",
        "apikey",
        "token",
        "secret",
        "session_id",
        "sessionid",
        "hmac",
        "signature",
        "auth",
        "authorization",
        "credentials",
    }
)
SECRET_PARTS = ("password", "passwd", "secret", "token", "api_key", "apikey")

REDACTED = "[redacted]"

# name=value pairs of a query string (after ?, & or ;) in free text; the name is checked in code.
_PAIR = re.compile(r"(?<=[?&;])([^=&;#\s?]+)=([^&;#\s\"']*)")


def is_secret_name(name: str) -> bool:
    """Whether a parameter of this name holds a secret."""
    lowered = name.lower()
    return lowered in SECRET_NAMES or any(part in lowered for part in SECRET_PARTS)


def _redact_pair(match: re.Match[str]) -> str:
    name = match.group(1)
    if match.group(2) and is_secret_name(_unquoted(name)):
        return f"{name}={REDACTED}"
    return match.group(0)


def _unquoted(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    return unquote_plus(name)


def redact_text(text: str) -> str:
    """``text`` with the values of secret-named query parameters replaced by ``[redacted]``."""
    if "=" not in text:
        return text
    return _PAIR.sub(_redact_pair, text)


def redact_target(target: str | None) -> str:
    """A request target (path and query) fit for a log line."""
    if not target:
        return ""
    query = target.find("?")
    if query < 0:
        return target
    return target[:query] + redact_text(target[query:])


class RedactingFilter(logging.Filter):
    """Redacts secret query values in every record a log handler writes (message and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "toto.access":  # its line names the path, never the query: no cost per request
            return True
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted is not message and redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True
