"""The health check over HTTP: readiness and liveness, its options, and draining on SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

from toto.client import TotoClient
from toto.testing import get_json, health_turns


def keep_alive(server) -> http.client.HTTPConnection:  # type: ignore[no-untyped-def]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.connect()
    return connection


def ask(
    connection: http.client.HTTPConnection, path: str, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection.request(method, path)
    answer = connection.getresponse()
    return answer.status, answer.headers, answer.read()  # header names are case-insensitive


def call(server, payload: object, path: str = "/") -> dict:  # type: ignore[no-untyped-def]
    _, _, body = TotoClient(server.url).request(json.dumps(payload).encode(), path, sign=False)
    return json.loads(body)


def test_ready_and_live_answer_200_with_each_part(server):
    status, body = get_json(server.url, "/_health")
    assert status == 200
    assert body["status"] == "ok"
    assert {name: part["status"] for name, part in body["parts"].items()} == {"storage": "up", "event_bus": "up"}
    assert (body["parts"]["storage"]["name"], body["parts"]["event_bus"]["name"]) == ("memory", "local")
    assert get_json(server.url, "/_health/live") == (200, {"status": "ok", "draining": False})
    connection = keep_alive(server)
    status, headers, content = ask(connection, "/_health", "HEAD")
    assert status == 200 and content == b"" and headers["Cache-Control"] == "no-store"
    assert ask(connection, "/_health", "POST")[0] == 405


def test_the_check_is_never_reachable_as_a_method_name(server):
    assert call(server, {"method": "_health"})["error"]["code"] == 1001
    assert call(server, {"method": "_health.live"})["error"]["code"] == 1001


def test_path_is_configurable_and_off_with_an_empty_one(start_server):
    moved = start_server(health_path="ops/ready", root="/api")
    assert get_json(moved.url, "/api/ops/ready")[0] == 200
    assert get_json(moved.url, "/api/ops/ready/live")[0] == 200
    assert get_json(moved.url, "/_health")[0] == 404
    # The path names a route, not a method: a body naming it calls the method lookup, which refuses.
    assert call(moved, {"method": "ops.ready"}, "/api/")["error"]["code"] == 1001
    off = start_server(health_path="")
    status, body = get_json(off.url, "/_health")
    assert status == 200 and body["error"]["code"] == 1001, "no route: the path is an (invalid) method name"


def test_readiness_fails_while_draining_and_liveness_does_not(start_server):
    server = start_server(drain_delay=6, drain_timeout=5)
    before = keep_alive(server)
    assert ask(before, "/_health")[0] == 200
    server.proc.send_signal(signal.SIGTERM)
    # A balancer that probes on a new connection sees 503 while the port still accepts.
    body = health_turns(server.url, 503, 5)
    assert body["status"] == "draining" and body["down"] == ["server"], body
    status, _, content = ask(before, "/_health")
    assert status == 503 and json.loads(content)["status"] == "draining"
    assert get_json(server.url, "/_health/live") == (200, {"status": "ok", "draining": True})
    assert get_json(server.url, "/echo?still=served") == (200, {"result": {"still": "served"}})
    assert server.proc.wait(20) == 0, "after drain_delay the server stops by itself"


def test_without_drain_delay_readiness_fails_on_open_connections_while_requests_drain(start_server, http_transport):
    server = start_server(drain_timeout=20)
    probe = keep_alive(server)
    assert ask(probe, "/_health")[0] == 200
    answers: list[object] = []
    slow = threading.Thread(target=lambda: answers.append(get_json(server.url, "/sleep?seconds=4")))
    slow.start()
    health_turns(server.url, 200, 5)  # the slow request is in flight once the loop answers again
    time.sleep(1)  # and accepted by now, also where the HTTP server accepts apart from the loop
    server.proc.send_signal(signal.SIGTERM)
    if http_transport == "granian":
        # granian's shutdown stops accepting and closes idle kept-alive connections at once
        # (it cannot do one without the other); the request in flight still finishes.
        time.sleep(0.5)  # the signal reaches the loop after requests granian's threads already queued
        try:
            status, _, content = ask(probe, "/_health")
            assert status == 503 and json.loads(content)["down"] == ["server"]
        except (ConnectionError, http.client.HTTPException):
            pass
    else:
        status, _, content = ask(probe, "/_health")
        assert status == 503 and json.loads(content)["down"] == ["server"]
    slow.join(10)
    assert answers == [(200, {"result": {"slept": 4.0}})]
    assert server.proc.wait(20) == 0
