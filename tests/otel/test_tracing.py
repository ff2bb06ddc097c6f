"""toto-otel over HTTP: the span trees of a signed call, a batch, and an event that crosses
servers over the Redis bus, as the application's in-memory exporter holds them."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

import pytest
from toto.client import TotoClient
from toto.testing import unique_user as user

MEMORY = {"TOTO_TEST_MEMORY_SPANS": "1"}


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def spans_of(server: Any, trace_id: str) -> list[dict[str, Any]]:
    """The finished spans of one trace on ``server`` (taking them from its exporter)."""
    return [span for span in TotoClient(server.url).call("spans") if span["trace_id"] == trace_id]


def one(spans: list[dict[str, Any]], **wanted: Any) -> dict[str, Any]:
    found = [span for span in spans if all(span.get(k) == v for k, v in wanted.items())]
    assert len(found) == 1, f"{wanted}: {found} in {spans}"
    return found[0]


def send(client: TotoClient, payload: object, header: str, sign: bool = True) -> dict[str, Any]:
    _, _, body = client.request(json.dumps(payload).encode(), headers={"traceparent": header}, sign=sign)
    return json.loads(body)


def test_a_signed_call_on_redis_is_a_server_span_with_the_method_and_redis_calls_below(
    start_server, redis_url: str, prefix: str
):
    server = start_server(env=MEMORY, database="redis", database_url=redis_url, redis_prefix=prefix)
    client = server.client()
    name = user()
    client.create(name, "a long secret")
    header, trace_id, caller = traceparent()
    assert send(client, {"method": "whoami"}, header)["result"] == {"user_id": name}
    spans = spans_of(server, trace_id)
    request = one(spans, kind="SERVER")
    assert request["parent_id"] == caller, "the trace continues the caller's traceparent"
    assert (request["name"], request["status"]) == ("whoami", "UNSET")
    assert request["attributes"]["rpc.method"] == "whoami"
    assert request["attributes"]["http.response.status_code"] == 200
    assert "enduser.id" not in request["attributes"], "user ids are left out by default"
    call = one(spans, kind="INTERNAL")
    assert (call["name"], call["parent_id"]) == ("whoami", request["span_id"])
    storage = [span for span in spans if span["kind"] == "CLIENT"]
    assert storage, f"the session load is a Redis span: {spans}"
    assert {span["parent_id"] for span in storage} <= {request["span_id"], call["span_id"]}
    assert all(
        span["attributes"].get("db.system", span["attributes"].get("db.system.name")) == "redis" for span in storage
    )


def test_a_batch_is_one_server_span_with_a_child_per_entry(start_server):
    server = start_server(env=MEMORY, database="memory")
    client = server.client()
    header, trace_id, _ = traceparent()
    batch = {"batch": {"a": {"method": "echo"}, "b": {"method": "fail"}, "c": {"method": "sleep", "parameters": {}}}}
    answers = send(client, batch, header, sign=False)["batch"]
    assert answers["b"]["error"]["code"] == 1000
    spans = spans_of(server, trace_id)
    request = one(spans, kind="SERVER")
    assert request["name"] == "(batch)" and request["attributes"]["toto.batch.size"] == 3
    children = {span["name"]: span for span in spans if span["parent_id"] == request["span_id"]}
    assert sorted(children) == ["echo", "fail", "sleep"]
    assert children["fail"]["status"] == "ERROR" and children["fail"]["attributes"]["toto.error.code"] == 1000
    assert children["echo"]["status"] == children["sleep"]["status"] == "UNSET"


def test_errors_mark_the_server_span(start_server):
    server = start_server(env=MEMORY, database="memory")
    header, trace_id, _ = traceparent()
    assert send(server.client(), {"method": "whoami"}, header, sign=False)["error"]["code"] == 1004
    request = one(spans_of(server, trace_id), kind="SERVER")
    assert request["status"] == "ERROR" and request["attributes"]["toto.error.code"] == 1004


def test_an_event_carries_the_trace_to_the_server_that_handles_it(start_server, redis_url: str, prefix: str):
    options = {"env": MEMORY, "database": "memory", "event_bus": "redis", "event_url": redis_url}
    a, b = start_server(redis_prefix=prefix, **options), start_server(redis_prefix=prefix, **options)
    waited: dict[str, Any] = {}
    poll = threading.Thread(
        target=lambda: waited.update(b.client().call("events.wait", {"name": "traced", "timeout": 15}) or {})
    )
    poll.start()
    deadline = time.monotonic() + 10
    while b.client().call("events.count")["handlers"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    header, trace_id, caller = traceparent()
    sent = send(a.client(), {"method": "events.send", "parameters": {"name": "traced", "args": [1]}}, header, False)
    assert sent["result"] == {"sent": "traced"}
    poll.join(20)
    assert waited == {"event": "traced", "args": [1]}
    on_a, on_b = spans_of(a, trace_id), spans_of(b, trace_id)
    request = one(on_a, kind="SERVER")
    assert request["parent_id"] == caller
    call = one(on_a, kind="INTERNAL", name="events.send")
    assert call["parent_id"] == request["span_id"]
    handled = one(on_b, kind="CONSUMER")
    assert handled["parent_id"] == call["span_id"], "server b's span is a child of the call on server a"
    assert handled["attributes"]["messaging.destination.name"] == "traced"
    assert {span["trace_id"] for span in on_a + on_b} == {trace_id}


def test_user_ids_can_be_hashed_with_a_key(start_server):
    server = start_server(env=MEMORY, database="memory", otel_user_id="hash", otel_user_id_key="k3y")
    client = server.client()
    name = user()
    client.create(name, "a long secret")
    header, trace_id, _ = traceparent()
    send(client, {"method": "whoami"}, header)
    request = one(spans_of(server, trace_id), kind="SERVER")
    expected = hmac.new(b"k3y", name.encode(), hashlib.sha256).hexdigest()[:32]
    assert request["attributes"]["enduser.id"] == expected


def test_hashing_user_ids_without_a_key_is_refused_at_startup(start_server):
    with pytest.raises(RuntimeError) as failed:
        start_server(env=MEMORY, database="memory", otel_user_id="hash")
    assert "otel_user_id=hash needs otel_user_id_key" in str(failed.value)


def test_the_exporter_is_chosen_by_the_otel_environment(start_server):
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "shop-api", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    server = start_server(env=env, database="memory")
    assert server.client().call("echo", {"x": 1}) == {"x": 1}
    server.stop()
    output = server.output()
    assert '"name": "echo"' in output and '"service.name": "shop-api"' in output, output
    silent = start_server(env={"OTEL_TRACES_EXPORTER": "none"}, database="memory")
    silent.client().call("echo")
    silent.stop()
    assert '"name": "echo"' not in silent.output()


def test_a_server_that_does_not_trace_calls_no_hook_on_the_request_path(start_server):
    """Installed but not tracing, toto-otel registers none of its request-path hooks, so the
    core skips them (TOTO_TRACE_HOOKS logs every hook call that is made)."""
    only_otel = {"TOTO_PLUGINS": "toto-otel", "TOTO_TRACE_HOOKS": "1"}
    silent = start_server(env={**only_otel, "OTEL_TRACES_EXPORTER": "none"}, database="memory")
    assert silent.client().call("echo", {"x": 1}) == {"x": 1}
    silent.stop()
    quiet_log = silent.output()
    assert "toto_startup(" in quiet_log, quiet_log  # the hook log is on
    for hook in ("toto_request_started(", "toto_before_invoke(", "toto_after_invoke(", "toto_request_finished("):
        assert hook not in quiet_log, quiet_log
    tracing = start_server(env={**only_otel, **MEMORY}, database="memory")
    assert tracing.client().call("echo", {"x": 2}) == {"x": 2}
    tracing.stop()
    traced_log = tracing.output()
    for hook in ("toto_request_started(", "toto_before_invoke(", "toto_after_invoke(", "toto_request_finished("):
        assert hook in traced_log and "toto-otel" in traced_log.split(hook, 1)[1].split("\n", 1)[0], traced_log
