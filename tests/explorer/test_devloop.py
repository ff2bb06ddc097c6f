"""The development loop (issue 16): the access log, JSON log lines, and ``toto serve --reload``."""

from __future__ import annotations

import json
import time
import urllib.error

from tests.explorer.conftest import TYPED_APP, http, post

RELOAD_WAIT = 60.0  # generous: the machine may be busy; the checks poll for an outcome, they do not time it


def access_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " toto.access: " in line]


def test_one_access_line_per_request_at_info(start_server):
    server = start_server(cwd=TYPED_APP, database="memory", logging="info")
    client = server.client()
    client.create("Logged-User", "pw")
    client.call("notes.add", {"title": "x"})
    post(server, "/add", {"parameters": {"a": 1, "b": "no"}})
    post(server, "/", {"batch": {"1": {"method": "add", "parameters": {"a": 1, "b": 1}}, "2": {"method": "nope"}}})
    http(server.url + "/_nothing_here")
    server.stop()
    lines = access_lines(server.output())
    assert len(lines) == 5, lines
    create, note, bad, batch, invalid = (line.split(" toto.access: ", 1)[1].split(" ") for line in lines)
    # The Python client names the method in the body, so its path is "/".
    assert create[:5] == ["POST", "/", "account.create", "200", "-"] and create[6] == "logged-user"
    assert create[5].endswith("ms") and float(create[5][:-2]) >= 0
    assert note[:5] == ["POST", "/", "notes.add", "200", "-"] and note[6] == "logged-user"
    assert bad[:5] == ["POST", "/add", "add", "200", "1003"] and bad[6] == "-"
    assert batch[:5] == ["POST", "/", "add", "200", "1001"]
    assert invalid[:5] == ["GET", "/_nothing_here", "_nothing_here", "200", "1001"]


def test_access_log_off(start_server):
    server = start_server(cwd=TYPED_APP, database="memory", logging="info", access_log="off")
    post(server, "/add", {"parameters": {"a": 1, "b": 2}})
    server.stop()
    assert "Toto listening" in server.output() and access_lines(server.output()) == []


def test_json_log_lines(start_server):
    server = start_server(cwd=TYPED_APP, database="memory", logging="info", log_format="json")
    client = server.client()
    client.create("json-user", "pw")
    post(server, "/add", {"parameters": {"a": 1}})
    server.stop()
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "toto.server" and "Toto listening" in r["message"] for r in records)
    access = [r for r in records if r["logger"] == "toto.access"]
    assert [(r["method"], r["status"], r["error_code"], r["user_id"]) for r in access] == [
        ("account.create", 200, None, "json-user"),
        ("add", 200, 1003, None),
    ]
    assert all(r["level"] == "info" and r["http_method"] == "POST" and r["duration_ms"] >= 0 for r in access)


def wait_for(check, what: str):
    deadline = time.monotonic() + RELOAD_WAIT
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last is True:
                return
        except (OSError, urllib.error.URLError) as exc:  # between the old child and the new one
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {RELOAD_WAIT}s (last: {last!r})")


def test_reload_on_method_and_config_changes(tmp_path, start_server):
    methods = tmp_path / "methods"
    methods.mkdir()
    (methods / "__init__.py").write_text("")
    (methods / "version.py").write_text("def invoke(handler, parameters):\n    return 1\n")
    conf = tmp_path / "toto.conf"
    conf.write_text("allow_origin = 'https://one.example'\n")
    server = start_server(cwd=str(tmp_path), args=[str(conf)], database="memory", reload=True, logging="info")
    assert post(server, "/version", {})["result"] == 1

    (methods / "version.py").write_text("def invoke(handler, parameters):\n    return 2\n")
    wait_for(lambda: post(server, "/version", {})["result"] == 2, "reload after a method changed")
    # A new method module, and a typed one: both come with the new child.
    (methods / "added.py").write_text(
        "from typing import TypedDict\n\n\nclass P(TypedDict):\n    n: int\n\n\n"
        "def invoke(handler, parameters: P) -> int:\n    return parameters['n'] * 2\n"
    )
    wait_for(lambda: post(server, "/added", {"parameters": {"n": 21}}).get("result") == 42, "a new method")
    # A broken module does not end the loop: fixing it is picked up.
    (methods / "version.py").write_text("def invoke(handler, parameters):\n    return (\n")
    wait_for(
        lambda: post(server, "/version", {}).get("error", {}).get("code") == 1000,
        "the broken module served as an error",
    )
    (methods / "version.py").write_text("def invoke(handler, parameters):\n    return 3\n")
    wait_for(lambda: post(server, "/version", {}).get("result") == 3, "reload after the fix")

    conf.write_text("allow_origin = 'https://two.example'\n")
    wait_for(
        lambda: http(server.url + "/version")[1]["access-control-allow-origin"] == "https://two.example",
        "reload after the config changed",
    )
    assert server.stop() == 0
    output = server.output()
    assert "restarting: " in output and "version.py changed" in output
    assert "Toto stopped" in output.rsplit("restarting", 1)[1]  # the last child stopped cleanly with the parent
