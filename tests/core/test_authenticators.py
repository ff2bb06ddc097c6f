"""A third-party signing scheme (tests/plugins/toto_example_signing) works end to end: selected by
--hmac_mode on the server, with options of its own, and used by the Python client and ``toto call``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from toto.auth import Authenticator
from toto.client import TotoClient, TotoClientError
from toto.exceptions import ERROR_INVALID_RESPONSE_HMAC, TotoException

from tests.conftest import env_with
from tests.operations import toto


@pytest.fixture
def signing_env(plugin_path: str) -> dict[str, str]:
    return env_with(plugin_path, "toto_example_signing")


@pytest.fixture
def example_signing(plugin_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The plugin's module, importable in this process too (for clients configured by hand)."""
    monkeypatch.syspath_prepend(os.path.join(plugin_path, "toto_example_signing"))
    import toto_example_signing.plugin as module

    yield module
    sys.modules.pop("toto_example_signing.plugin", None)
    sys.modules.pop("toto_example_signing", None)


def test_the_plugins_scheme_signs_and_verifies_both_ways(start_server, signing_env, example_signing, user_id) -> None:
    server = start_server(env=signing_env, hmac_mode="example")
    client = server.client(hmac_mode=example_signing.ExampleSigning())
    created = client.create(user_id, "pw")
    assert created["user_id"] == user_id
    assert client.call("whoami") == {"user_id": user_id}, "an authenticated call signed by the plugin"
    assert [client.call("counter.increment") for _ in range(2)] == [1, 2]
    status, headers, _ = client.request(client._body("whoami", None))
    assert status == 200 and headers["x-example-signature"], "answers carry the plugin's signature"
    assert "x-example-signature" in headers["Access-Control-Expose-Headers"], "and expose it to browsers"

    # A request the scheme did not sign is refused (1008) before the method runs.
    unsigned = server.client(hmac_mode="off")
    unsigned.session = dict(client.session or {})
    with pytest.raises(TotoClientError) as caught:
        unsigned.call("counter.increment")
    assert caught.value.code == 1008
    assert client.call("counter.increment") == 3

    # An answer that the client's half does not find signed for the session is 1009.
    class Doubting(example_signing.ExampleSigning):
        def verify_response(self, session: Any, headers: Any, body: bytes) -> None:
            super().verify_response(session, headers, body + b" ")

    doubting = server.client(hmac_mode=Doubting())
    doubting.session = dict(client.session or {})
    with pytest.raises(TotoClientError) as caught:
        doubting.call("whoami")
    assert caught.value.code == ERROR_INVALID_RESPONSE_HMAC


def test_the_schemes_own_option_configures_it(start_server, signing_env, example_signing, user_id) -> None:
    server = start_server(env=signing_env, hmac_mode="example", example_digest="sha512")
    strong = server.client(hmac_mode=example_signing.ExampleSigning("sha512"))
    strong.create(user_id, "pw")
    assert strong.call("whoami") == {"user_id": user_id}
    weak = server.client(hmac_mode=example_signing.ExampleSigning("sha256"))
    weak.session = dict(strong.session or {})
    with pytest.raises(TotoClientError) as caught:
        weak.call("whoami")
    assert caught.value.code in (1008, 1009)


def test_the_python_client_finds_the_scheme_by_name(start_server, signing_env, user_id) -> None:
    """As a user's script would: ``TotoClient(url, hmac_mode="example")`` with the plugin installed."""
    server = start_server(env=signing_env, hmac_mode="example")
    script = (
        "import json, sys\n"
        "from toto.client import TotoClient\n"
        "client = TotoClient(sys.argv[1], hmac_mode='example')\n"
        "client.create(sys.argv[2], 'pw')\n"
        "print(json.dumps([client.call('whoami'), client.call('counter.increment')]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, user_id],
        env=dict(os.environ, **signing_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"user_id": user_id}, 1]


def test_toto_call_and_serve_take_the_scheme_from_the_registry(start_server, signing_env, user_id) -> None:
    server = start_server(env=signing_env, hmac_mode="example")
    called = toto(
        "call", server.url, "whoami", f"--user_id={user_id}", "--password=pw", "--create", "--hmac_mode=example",
        env=signing_env,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"user_id": user_id}

    help_text = toto("serve", "--help", env=signing_env).stdout
    assert "--example_digest" in help_text and "(sha256 | sha512)" in help_text
    assert "(example | off | session_key | user_id)" in help_text, "the hmac_mode choices are the installed schemes"
    listed = toto("plugins", env=signing_env).stdout
    assert "toto-example-signing 0.3.0\n  hooks: toto_register_authenticators\n  hmac modes: example" in listed
    assert "  options: --example_digest" in listed

    refused = toto("serve", "--hmac_mode=examples", env=signing_env)
    assert refused.returncode == 2 and "choose one of: example | off | session_key | user_id" in refused.stderr
    refused = toto("call", server.url, "whoami", "--hmac_mode=examples", env=signing_env)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "hmac_mode 'examples' is not installed (installed: example, off, session_key, user_id)" in refused.stderr


def test_a_scheme_without_a_client_half_is_refused_by_the_client() -> None:
    from toto.auth import Authenticator

    class ServerOnly(Authenticator):
        def verify_request(self, handler: Any, session: Any, body: bytes) -> None:
            raise TotoException(1008, "never")

    with pytest.raises(ValueError, match="has no client half"):
        TotoClient("http://127.0.0.1:1", hmac_mode=ServerOnly())


def test_the_core_schemes_are_found_the_same_way() -> None:
    from toto.client import find_authenticator
    from toto.signing import NoSigning, SessionKeySigning, UserIdSigning

    assert isinstance(find_authenticator("user_id"), UserIdSigning)
    assert isinstance(find_authenticator("session_key"), SessionKeySigning)
    assert isinstance(find_authenticator("off"), NoSigning)
    with pytest.raises(ValueError, match=r"hmac_mode 'sha1' is not installed \(installed: .*off, session_key, user_id"):
        find_authenticator("sha1")


def test_a_scheme_without_a_message_half_refuses_socket_calls(example_signing) -> None:
    """A scheme written for HTTP alone never lets a socket call use a session unchecked: the
    interface's default message half refuses (1008), whatever the frame carries."""

    class HttpOnly(example_signing.ExampleSigning):
        verify_message = Authenticator.verify_message
        sign_message = Authenticator.sign_message

    session: Any = SimpleNamespace(session_id="s" * 22, user_id="ada", key=None)
    for signature in (None, "AAAA"):
        with pytest.raises(TotoException) as caught:
            HttpOnly().verify_message(None, session, {"id": 1, "method": "whoami"}, b"{}", signature)
        assert caught.value.code == 1008
    assert HttpOnly().sign_message({"session_id": "s"}, {}, b"{}") is None, "and its client sends calls unsigned"
