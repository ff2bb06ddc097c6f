"""Secrets in request targets never reach the log (issue 23): a GET call's ``password``,
``new_password``, ``key``, ``token``, ``secret`` or ``session_id`` is written ``[redacted]``
in every line that names the request, warnings and tracebacks included, in text and JSON."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import pytest
from toto.testing import free_port
from toto.testing.server import ServerProcess


def get(server: ServerProcess, target: str, headers: dict[str, str] | None = None) -> int:
    status, _, _ = server.client().request(b"", target, method="GET", headers=headers, sign=False)
    return status


def secret_query(marker: str, **others: str) -> tuple[str, list[str]]:
    values = {name: f"{name}-{marker}" for name in ("password", "new_password", "key", "token", "api_secret")}
    return urlencode({**others, **values}), list(values.values())


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_failing_get_call_logs_its_target_without_secrets(start_server, log_format):
    server = start_server(logging="info", log_format=log_format)
    marker = secrets.token_hex(6)
    query, values = secret_query(marker, note="visible")
    assert get(server, f"/fail?{query}") == 200  # 1000: an unexpected error, logged with its traceback
    server.stop()
    log = server.output()
    assert "GET /fail?note=visible&password=[redacted]" in log, log[-3000:]
    assert "Traceback" in log or "exception" in log, "the error was logged with its traceback"
    leaked = [value for value in values if value in log]
    assert not leaked, f"{leaked} in the log:\n{log[-3000:]}"


def test_calls_answered_1013_when_storage_is_down_log_no_secrets(start_server):
    # Redis where nothing listens: the server starts, and every storage call answers 1013.
    server = start_server(logging="info", database="redis", database_url=f"redis://127.0.0.1:{free_port()}/0")
    marker = secrets.token_hex(6)
    query, values = secret_query(marker, user_id="someone")
    get(server, f"/account/login?{query}")  # the login of the report (however GET logins are answered)
    assert get(server, f"/echo?{query}", {"x-toto-session-id": "A" * 22}) == 503  # the session load fails
    server.stop()
    log = server.output()
    assert "GET /echo?user_id=someone&password=[redacted]" in log, log[-3000:]
    leaked = [value for value in values if value in log]
    assert not leaked, f"{leaked} in the log:\n{log[-3000:]}"
