"""toto-prometheus over HTTP: /metrics after a mixed load, in one process and in a --processes=2 group."""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from toto.client import TotoClient, TotoClientError
from toto.testing import get_json
from toto.testing import unique_user as user
from toto.testing.server import ServerProcess, free_port

from tests.conftest import BASIC_APP, FAST

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
#: What the scrapes of these tests send (the servers' prometheus_token).
TOKEN = secrets.token_urlsafe(16)


@pytest.fixture
def start_server(start_server):
    """The shared ``start_server``, its metrics on the API port for scrapers with ``TOKEN``."""

    def start(**options: Any) -> ServerProcess:
        return start_server(**{"prometheus_token": TOKEN, **options})

    return start


def fetch(url: str, path: str = "/metrics", headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def scrape(url: str, path: str = "/metrics") -> Samples:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    answer = connection.getresponse()
    assert answer.status == 200, answer.status
    assert answer.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
    text = answer.read().decode()
    connection.close()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def raw_call(url: str, payload: object, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, _, body = TotoClient(url).request(json.dumps(payload).encode(), "/", sign=False, headers=headers or {})
    return json.loads(body)


def check_histogram(samples: Samples, name: str, count: float, **labels: str) -> list[tuple[float, float]]:
    """The buckets of one histogram series are cumulative and end at ``count``; returns (le, count) pairs."""
    buckets = sorted(
        (float(dict(key)["le"]), v)
        for key, v in series(samples, name + "_bucket").items()
        if {k: v2 for k, v2 in key if k != "le"} == labels
    )
    assert buckets, f"no buckets of {name} {labels}"
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}"
    assert buckets[-1] == (float("inf"), count)
    assert value(samples, name + "_count", **labels) == count
    total = value(samples, name + "_sum", **labels)
    assert 0 < total < count * 10, f"{name}_sum {total} for {count} observations"
    return buckets


def mixed_load(url: str) -> dict[str, int]:
    """Calls of every outcome; returns how many requests of each kind were made."""
    client = TotoClient(url)
    name = user()
    client.create(name, "a long secret")
    for _ in range(7):
        assert client.call("whoami") == {"user_id": name}
    anonymous = TotoClient(url)
    for i in range(5):
        assert anonymous.call("echo", {"i": i}) == {"i": i}
    for _ in range(3):
        with pytest.raises(TotoClientError) as failed:
            anonymous.call("fail")
        assert failed.value.code == 1000
    for _ in range(2):
        with pytest.raises(TotoClientError) as refused:
            anonymous.call("whoami")
        assert refused.value.code == 1004
    assert raw_call(url, {"method": "whoami"}, {"x-toto-session-id": "x" * 22})["error"]["code"] == 1007
    assert raw_call(url, {"method": "no.such.method"})["error"]["code"] == 1001
    batch = {"a": ("echo", {"n": 1}), "b": ("fail", None), "c": ("echo", None)}
    answers = anonymous.batch(batch)
    assert answers["a"] == {"n": 1} and answers["b"].code == 1000
    anonymous.batch({str(i): ("echo", {"i": i}) for i in range(5)})
    assert anonymous.call("sleep", {"seconds": 0.3}) == {"slept": 0.3}
    assert anonymous.call("events.send", {"name": "metrics-test", "args": {"x": 1}}) == {"sent": "metrics-test"}
    return {"whoami": 7, "echo": 5, "fail": 3, "refused": 2}


def check_mixed_load(samples: Samples) -> None:
    requests = "toto_requests_total"
    assert value(samples, requests, method="account.create", code="") == 1
    assert value(samples, requests, method="whoami", code="") == 7
    assert value(samples, requests, method="echo", code="") == 5
    assert value(samples, requests, method="fail", code="1000") == 3
    assert value(samples, requests, method="whoami", code="1004") == 2
    assert value(samples, requests, method="whoami", code="1007") == 1
    assert value(samples, requests, method="(unknown)", code="1001") == 1
    assert value(samples, requests, method="(batch)", code="") == 2
    assert value(samples, requests, method="sleep", code="") == 1
    assert value(samples, requests, method="events.send", code="") == 1
    assert sum(series(samples, requests).values()) == 24, "nothing else was counted (no scrapes, no health checks)"

    calls = "toto_calls_total"
    # Each batch entry is a call; the 1007 and 1001 requests never reached a method.
    assert value(samples, calls, method="echo", outcome="ok", code="") == 5 + 2 + 5
    assert value(samples, calls, method="fail", outcome="error", code="1000") == 3 + 1
    assert value(samples, calls, method="whoami", outcome="ok", code="") == 7
    assert value(samples, calls, method="whoami", outcome="error", code="1004") == 2

    # Latency is by method, whatever the outcome: 7 signed, 2 refused, 1 unknown session.
    check_histogram(samples, "toto_request_duration_seconds", 10, method="whoami")
    slept = dict(check_histogram(samples, "toto_request_duration_seconds", 1, method="sleep"))
    assert slept[0.25] == 0 and slept[0.5] == 1, "a 0.3 s call lands between 0.25 and 0.5 s"
    batches = dict(check_histogram(samples, "toto_batch_size", 2))
    assert (batches[2.0], batches[5.0]) == (0, 2), "batches of 3 and 5 calls"
    assert value(samples, "toto_batch_size_sum") == 8

    # Each request naming a session loads it once: 7 signed whoami and the unknown (1007) one.
    check_histogram(samples, "toto_storage_duration_seconds", 7 + 1, operation="load_session")
    assert value(samples, "toto_storage_duration_seconds_count", operation="create_account") == 1
    assert value(samples, "toto_events_published_total", broadcast="true") == 1
    assert value(samples, "toto_events_delivered_total") >= 1
    assert value(samples, "toto_requests_in_flight") == 0
    build = series(samples, "toto_build_info")
    assert len(build) == 1 and dict(next(iter(build)))["database"] == "memory"


def test_one_process_counts_a_mixed_load_exactly(start_server):
    server = start_server(database="memory")
    assert scrape(server.url) is not None  # a scrape before the load is not counted as a request
    get_json(server.url, "/_health")
    mixed_load(server.url)
    samples = scrape(server.url)
    check_mixed_load(samples)
    assert value(samples, "process_resident_memory_bytes") > 0, "a lone process also shows its process metrics"


def test_in_flight_counts_requests_being_served(start_server):
    server = start_server(database="memory")
    slow = threading.Thread(target=lambda: server.client().call("sleep", {"seconds": 3}))
    slow.start()
    deadline = time.monotonic() + 5
    while value(scrape(server.url), "toto_requests_in_flight") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(scrape(server.url), "toto_requests_in_flight") == 1
    slow.join(10)
    assert value(scrape(server.url), "toto_requests_in_flight") == 0


def test_metrics_on_a_port_of_their_own(start_server):
    port = free_port()
    server = start_server(database="memory", prometheus_port=port, prometheus_path="internal/metrics")
    server.client().call("echo")
    samples = scrape(f"http://127.0.0.1:{port}", "/internal/metrics")
    assert value(samples, "toto_requests_total", method="echo", code="") == 1
    status, body = get_json(server.url, "/metrics")
    assert status == 200 and body["error"]["code"] == 1001, "the API port no longer serves them"


def test_a_process_group_is_scraped_whole(tmp_path):
    port = free_port()
    options = {**FAST, "database": "memory", "processes": 2, "reuse_port": True, "prometheus_token": TOKEN}
    with ServerProcess(options, cwd=BASIC_APP, port=port) as group:
        # New connections spread over both processes (SO_REUSEPORT); each request counts once.
        pids = {get_json(group.url, "/events/count")[1]["result"]["pid"] for _ in range(30)}
        assert len(pids) == 2, f"both processes served: {pids}"
        loads = [threading.Thread(target=mixed_load, args=(group.url,)) for _ in range(2)]
        for load in loads:
            load.start()
        for load in loads:
            load.join(60)
        # Whichever process answers the scrape shows the whole group, every time.
        first, second = scrape(group.url), scrape(group.url)
        for samples in (first, second):
            assert value(samples, "toto_requests_total", method="events.count", code="") == 30
            assert value(samples, "toto_requests_total", method="whoami", code="") == 14
            assert value(samples, "toto_requests_total", method="fail", code="1000") == 6
            assert value(samples, "toto_requests_total", method="(batch)", code="") == 4
            assert value(samples, "toto_calls_total", method="echo", outcome="ok", code="") == 24
            check_histogram(samples, "toto_request_duration_seconds", 20, method="whoami")
            assert value(samples, "toto_requests_in_flight") == 0
            assert len(series(samples, "toto_build_info")) == 1


def test_a_group_on_a_metrics_port_keeps_counts_of_a_child_that_died():
    import os
    import signal

    port, metrics_port = free_port(), free_port()
    options = {**FAST, "database": "memory", "processes": 2, "reuse_port": True, "prometheus_port": metrics_port}
    with ServerProcess(options, cwd=BASIC_APP, port=port) as group:
        metrics = f"http://127.0.0.1:{metrics_port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # both children listen on the shared metrics port too
            try:
                scrape(metrics)
                break
            except OSError:
                time.sleep(0.1)
        pids = {get_json(group.url, "/events/count")[1]["result"]["pid"] for _ in range(30)}
        assert len(pids) == 2
        killed, survivor = sorted(pids)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 20
        served = 30
        seen: set[int] = set()
        while not (survivor in seen and seen - {killed, survivor}) and time.monotonic() < deadline:
            try:
                seen.add(get_json(group.url, "/events/count")[1]["result"]["pid"])
                served += 1
            except OSError:  # a connection the kernel had queued for the killed child
                time.sleep(0.05)
        assert survivor in seen and seen - {killed, survivor}, f"the killed child was replaced: {seen}"
        samples = scrape(metrics)
        # The dead child's requests still count; its in-flight gauge does not linger.
        assert value(samples, "toto_requests_total", method="events.count", code="") == served
        assert value(samples, "toto_requests_in_flight") == 0


def test_requests_refused_before_they_run_are_counted(start_server):
    """413, 431 and 405 are answered before a request reaches a method: they are counted
    under the (unknown) method with their error code, and leave nothing in flight."""
    server = start_server(database="memory", max_body_size=1000, max_header_size=4096)
    host, port = server.url.removeprefix("http://").split(":")

    def status_of(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        return answer.status

    assert status_of("POST", "/", b'{"method": "echo", "parameters": "' + b"x" * 2000 + b'"}') == 413
    assert status_of("POST", "/", b'{"method": "echo"}', {"x-padding": "y" * 8000}) == 431
    assert status_of("PUT", "/echo", b"{}") == 405
    assert status_of("POST", "/", b'{"method": "echo"}') == 200
    samples = scrape(server.url)
    requests = "toto_requests_total"
    assert value(samples, requests, method="(unknown)", code="1011") == 2, series(samples, requests)
    assert value(samples, requests, method="(unknown)", code="1017") == 1, series(samples, requests)
    assert value(samples, requests, method="echo", code="") == 1
    assert sum(series(samples, requests).values()) == 4, series(samples, requests)
    assert value(samples, "toto_requests_in_flight") == 0


def test_metrics_are_not_public_unless_the_operator_chooses(start_server):
    # Neither a port of their own nor a token: the page, which lists every method, is not served.
    server = start_server(database="memory", prometheus_token="", logging="info")
    server.client().call("echo")
    status, _, body = fetch(server.url)
    assert status == 200 and json.loads(body)["error"]["code"] == 1001, body[:200]
    assert b"toto_requests_total" not in body
    assert "metrics are not served" in server.output(), "the startup log says so, and how to serve them"


def test_on_the_api_port_only_scrapers_with_the_token_get_the_metrics(start_server):
    server = start_server(database="memory", logging="info")
    server.client().call("echo")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        status, answer_headers, body = fetch(server.url, headers=headers)
        assert status == 401 and answer_headers["WWW-Authenticate"].startswith("Bearer"), (headers, status)
        assert json.loads(body)["error"]["code"] == 1004 and b"toto_" not in body
    assert value(scrape(server.url), "toto_requests_total", method="echo", code="") == 1
    assert "metrics on the API port at /metrics; scrapers send Authorization: Bearer" in server.output()
    assert TOKEN not in server.output(), "the log never shows the token"


def test_a_port_of_their_own_listens_on_loopback_unless_told(start_server):
    # The API on every interface; the metrics, by default, on 127.0.0.1 only.
    port = free_port()
    server = start_server(
        database="memory", address="0.0.0.0", prometheus_port=port, prometheus_token="", logging="info"
    )
    server.client().call("echo")
    assert value(scrape(f"http://127.0.0.1:{port}"), "toto_requests_total", method="echo", code="") == 1
    assert f"metrics on http://127.0.0.1:{port}/metrics, a port of their own" in server.output()
    with socket.create_connection(("127.0.0.2", server.port), timeout=10):
        pass  # the API answers on another loopback address
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=10).close()
