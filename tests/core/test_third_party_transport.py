"""A third-party HTTP face (tests/plugins/toto_example_transport, ``--http=example``),
registered through ``toto_register_transports`` as the core's own are, serves calls."""

from __future__ import annotations

from toto.client import TotoClientError

from tests.conftest import env_with
from tests.operations import toto


def test_a_third_party_transport_serves_a_call(start_server, plugin_path, user_id) -> None:
    env = env_with(plugin_path, "toto_example_transport")
    server = start_server(env=env, http="example")
    client = server.client()
    assert client.create(user_id, "pw")["user_id"] == user_id
    assert client.call("whoami") == {"user_id": user_id}, "a signed call with its session"
    status, headers, _ = client.request(client._body("echo", {"a": 1}))
    assert status == 200 and headers["Server"] == "toto-example-transport", "answered by the plugin's face"
    try:
        client.call("nothing.here")
    except TotoClientError as exc:
        assert exc.code == 1001, exc  # answered in the protocol's shape by the one request path
    else:
        raise AssertionError("a missing method answered")


def test_the_http_choices_are_the_installed_transports(plugin_path) -> None:
    env = env_with(plugin_path, "toto_example_transport")
    help_text = toto("serve", "--help", env=env).stdout
    line = next(line for line in help_text.splitlines() if line.lstrip().startswith("--http "))
    choices = line[line.rindex("(") + 1 : line.rindex(")")].split(" | ")
    assert sorted(choices) == ["example", "granian", "tornado", "uvicorn"], line
    refused = toto("serve", "--http=example", "--use_web_sockets=true", env=env)
    assert refused.returncode != 0
    assert "use_web_sockets needs --http=tornado (--http=example serves HTTP calls only)" in refused.stderr
    listed = toto("plugins", env=env).stdout
    assert "toto-example-transport 0.1.0\n  hooks: toto_register_transports\n  transports: example" in listed
    assert "  transports: granian, tornado, uvicorn" in listed, "the core's own, through the same hook"
