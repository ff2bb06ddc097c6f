"""Fixtures of the toto-msgpack tests: servers of the basic app (and of a small app that
enables an extension type), and the machine's Redis for restarts on persistent storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from toto.client import TotoClient
from toto.testing import ServerProcess
from toto.testing import unique_user as user  # noqa: F401 (the tests import it from here)

from tests.conftest import BASIC_APP, FAST
from tests.redis.conftest import prefix, redis_url, run_prefix  # noqa: F401  (fixtures)
from tests.websocket.conftest import socket_server  # noqa: F401  (a fixture)

EXT_APP = str(Path(__file__).parent / "app")


@pytest.fixture(scope="module")
def server(http_transport: str) -> Iterator[ServerProcess]:
    """One memory-storage server of the basic app for the tests that need nothing special."""
    with ServerProcess({**FAST, "database": "memory"}, cwd=BASIC_APP) as srv:
        yield srv


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, timestamp=3)


def post(client: TotoClient, body: bytes, content_type: str = "application/msgpack", **headers: str) -> Any:
    """Send ``body`` (signed when the client holds a session); (status, content type, decoded answer)."""
    status, answer_headers, data = client.request(body, content_type=content_type, headers=headers or None)
    kind = answer_headers.get("Content-Type", "")
    if "msgpack" in kind:
        return status, kind, unpack(data)
    import json

    return status, kind, json.loads(data)
