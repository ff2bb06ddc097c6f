"""One call sequence on every face (toto.pipeline): what HTTP requests got and socket calls
missed before they ran the same code. Each test runs the same call over HTTP and over a socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toto.client import TotoClient, TotoClientError
from toto.testing import unique_user

from tests.websocket.conftest import answer, raw_socket, run

TESTS = Path(__file__).parent.parent
SEED_APP = str(TESTS / "compat" / "apps" / "seed")
SURFACE_APP = str(TESTS / "compat" / "surface" / "app")
SURFACE = {"event_init_module": "setup_events", "startup_function": "startup.setup"}
MEMORY_SPANS = {"TOTO_TEST_MEMORY_SPANS": "1"}


def test_sync_seed_code_signs_in_on_a_socket_as_over_http(socket_server) -> None:
    """``handler.create_session(...)`` from sync code and ``handler.db_connection`` (the
    original's account calls), as over HTTP: the socket then runs with the new session."""
    server = socket_server(cwd=SEED_APP, hmac_mode="off")
    name = unique_user()
    http = server.client(hmac_mode="off")
    assert http.call("visit")["visits"] == 1

    async def scenario() -> None:
        client = server.async_client(hmac_mode="off")
        async with await client.connect() as sock:
            first = await sock.call("visit")
            assert first["visits"] == 1 and first["session_id"]
            assert await sock.call("visit") == {"visits": 2, "session_id": first["session_id"]}, "the socket's session"
            created = await sock.call("account.create", {"user_id": name, "password": "pw"})
            assert created["user_id"] == name
            assert (await sock.call("visit"))["session_id"] == created["session_id"], "now the new session's"
            with_password = await sock.call("account.login", {"user_id": name, "password": "pw"})
            assert with_password["user_id"] == name
            try:
                await sock.call("account.login", {"user_id": name, "password": "wrong"})
            except TotoClientError as exc:
                assert exc.code == 1005, exc
            else:
                raise AssertionError("a wrong password signed in")

    run(scenario())


def test_a_session_named_by_parameter_serves_links_on_every_face(socket_server) -> None:
    """``@authenticated_with_parameter``: over HTTP a link's ``session_id`` names the session;
    on a socket the same call does (it answered 1000 there before: no ``retrieve_session``)."""
    server = socket_server(cwd=SURFACE_APP, hmac_mode="off", **SURFACE)
    name = unique_user()
    session_id = server.client(hmac_mode="off").create(name, "pw")["session_id"]
    link = TotoClient(server.url, hmac_mode="off", retries=0)
    expected = {"user_id": name, "parameters": {"x": 1}}
    assert link.call("link", {"session_id": session_id, "x": 1}) == expected

    async def scenario() -> None:
        conn = await raw_socket(server)
        for call_id, parameters, wanted in (
            (1, {"session_id": session_id, "x": 1}, {"result": expected}),
            (2, {"session_id": "B" * 22}, {"error": 1007}),
            (3, {}, {"error": 1004}),
        ):
            conn.write_message(json.dumps({"id": call_id, "method": "link", "parameters": parameters}))
            got: dict[str, Any] = await answer(conn)
            if "error" in wanted:
                assert "error" in got and got["error"]["code"] == wanted["error"], got
            else:
                assert got == {"id": call_id, **wanted}
        conn.close()

    run(scenario())


def test_request_hooks_hear_the_status_the_answer_carries(start_server) -> None:
    """toto_request_finished gets the status the same answer has over HTTP (400 for a
    malformed call), on a socket too (it heard 200 whatever happened before)."""
    server = start_server(env=MEMORY_SPANS, database="memory", use_web_sockets=True)
    client = server.client()
    status, _, _ = client.request(json.dumps({"batch": "x"}).encode(), sign=False)
    assert status == 400
    client.call("spans")  # forget the spans so far

    async def scenario() -> None:
        conn = await raw_socket(server)
        conn.write_message(json.dumps({"id": 1, "batch": "x"}))
        assert (await answer(conn))["error"]["code"] == 1011
        conn.write_message(json.dumps({"id": 2, "method": "echo", "parameters": {"a": 1}}))
        assert (await answer(conn))["result"] == {"a": 1}
        conn.close()

    run(scenario())
    spans = [span for span in client.call("spans") if span["kind"] == "SERVER" and span["name"] != "spans"]
    statuses = sorted(span["attributes"]["http.response.status_code"] for span in spans)
    assert statuses == [200, 400], spans
