"""A third-party signing scheme on sockets (tests/plugins/toto_example_signing, ``hmac_mode=example``):
its authenticator's message half signs the Python client's socket calls and checks hand-built frames."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect
from toto.testing import unique_user

from tests.conftest import env_with


@pytest.fixture
def signing_env(plugin_path: str) -> dict[str, str]:
    return env_with(plugin_path, "toto_example_signing")


@pytest.fixture
def example_signing(plugin_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(os.path.join(plugin_path, "toto_example_signing"))
    import toto_example_signing.plugin as module

    yield module
    sys.modules.pop("toto_example_signing.plugin", None)
    sys.modules.pop("toto_example_signing", None)


def test_the_plugins_scheme_signs_socket_calls_too(start_server, signing_env, example_signing) -> None:
    """The message half: the Python client's socket calls, and frames built by hand from the
    plugin's rule (its signature over the frame without the ``hmac`` member)."""
    server = start_server(env=signing_env, hmac_mode="example", use_web_sockets=True, database="memory")
    scheme = example_signing.ExampleSigning()
    user_id = unique_user()

    async def scenario() -> None:
        client = server.async_client(hmac_mode=scheme)
        async with await client.connect() as sock:
            await sock.create(user_id, "pw")
            assert await sock.call("whoami") == {"user_id": user_id}, "signed by the plugin's client half"
            assert await sock.batch({"w": ("whoami", None)}) == {"w": {"user_id": user_id}}
        session_id = (client.session or {})["session_id"]
        text = json.dumps({"id": 1, "method": "whoami", "parameters": {}})
        signed = text[:-1] + ',"hmac":"' + scheme.signature(session_id, text.encode()).decode() + '"}'
        wrong = text[:-1] + ',"hmac":"' + scheme.signature(session_id + "x", text.encode()).decode() + '"}'
        for frame, refused in ((signed, None), (text, 1008), (signed, None), (wrong, 1008)):
            if refused is None:
                raw = await websocket_connect(
                    HTTPRequest(f"ws://127.0.0.1:{server.port}/websocket", headers={"x-toto-session-id": session_id})
                )
            raw.write_message(frame)
            answer = json.loads(await raw.read_message())
            if refused is None:
                assert answer == {"id": 1, "result": {"user_id": user_id}}, "the frame signed by hand by the rule"
            else:  # unsigned or signed wrongly: refused before the method runs, and the socket closed (policy)
                assert answer["error"]["code"] == refused
                assert await raw.read_message() is None and raw.close_code == 1008

    asyncio.run(asyncio.wait_for(scenario(), 120))
