"""Servers of the typed test application (tests/apps/typed) with ``describe`` on."""

from __future__ import annotations

import http.client as http_client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from toto.testing.server import ServerProcess

from tests.conftest import FAST, TESTS

TYPED_APP = str(TESTS / "apps" / "typed")
DESCRIBED = {**FAST, "database": "memory", "describe": True}


@pytest.fixture(scope="module")
def described() -> Iterator[ServerProcess]:
    """One server of the typed app with ``describe`` on (hmac_mode user_id)."""
    with ServerProcess(DESCRIBED, cwd=TYPED_APP) as server:
        yield server


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to a test server (POST when there is a body); status, headers (lower-cased names), body."""
    parts = urllib.parse.urlsplit(url)
    connection = http_client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        connection.request("POST" if body is not None else "GET", target or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def post(server: ServerProcess, path: str, payload: Any) -> Any:
    """POST ``payload`` as JSON to ``path``; the decoded answer (HTTP 200 expected)."""
    status, _, body = http(server.url + path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert status == 200, (status, body)
    return json.loads(body)
