"""A page served from another origin uses a Toto server from a real browser (PROTOCOL.md 4 and 6).

Headless Chromium loads ``page.html`` from a small page server; the page's own JavaScript
(fetch + WebCrypto) creates an account, logs in, signs calls, checks the answers' signatures and
POSTs everything it saw back to the page server. Chromium's net log shows the CORS preflights
it sent and what the Toto server answered to them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from toto.signing import decode_session_key, session_key_request_hmac, session_key_response_hmac, user_id_hmac
from toto.testing.server import ServerProcess

from tests.browser.pages import PageServer
from tests.conftest import BASIC_APP

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE = (Path(__file__).parent / "page.html").read_bytes()
REPORT_TIMEOUT = 120.0  # generous: the machine may be busy
MAX_BODY = 100_000  # the page's too-large request is 300 KB
FAST = {"password_cost": 10, "database": "memory", "logging": "warning", "max_body_size": MAX_BODY}
USER = "Browser-Émile"  # mixed case and non-ASCII: the signing key is the lower-cased id as UTF-8
GREETING = "naïve ✓ 日本"


class Chromium:
    """One headless Chromium in its own process group, with a fresh profile and a net log."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="toto-chromium-")
        self.netlog = os.path.join(self.dir.name, "netlog.json")
        self.logfile = os.path.join(self.dir.name, "chromium.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def open(self, url: str) -> None:
        command = [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={os.path.join(self.dir.name, 'profile')}",
            f"--log-net-log={self.netlog}",
            url,
        ]
        # Keep everything the browser writes (NSS database, caches) inside the temporary directory.
        home = self.dir.name
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_DATA_HOME=home)
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_report(self, reports: queue.Queue[Any]) -> Any:
        """The page's report; fails if Chromium dies first or nothing comes in time."""
        assert self.proc is not None
        deadline = time.monotonic() + REPORT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                return reports.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    pytest.fail(f"chromium exited with {self.proc.returncode}:\n{self.log()}")
        pytest.fail(f"the page reported nothing within {REPORT_TIMEOUT}s; chromium said:\n{self.log()}")

    def wait_exit(self) -> None:
        """Wait for the browser to quit by itself (the page closes its tab after reporting)."""
        assert self.proc is not None
        try:
            self.proc.wait(REPORT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not quit after the page closed; it said:\n{self.log()}")
        self.stop()  # any helper process left in its group

    def log(self) -> str:
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()[-5000:]

    def stop(self) -> None:
        """Stop the browser and every helper process it started (same process group)."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            self._signal_group(proc.pid, signal.SIGKILL)
            proc.wait(20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._group_alive(proc.pid):
                time.sleep(0.1)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.dir.cleanup()

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def exchanges(self, host: str) -> list[dict[str, Any]]:
        """Every HTTP exchange with ``host`` in the net log: method, path, request and response headers."""
        assert self.proc is None, "read the net log after wait_exit(): the browser completes it on exit"
        log = json.loads(Path(self.netlog).read_text(encoding="utf-8"))
        kinds = log["constants"]["logEventTypes"]
        sent, received = kinds["HTTP_TRANSACTION_SEND_REQUEST_HEADERS"], kinds["HTTP_TRANSACTION_READ_RESPONSE_HEADERS"]
        by_source: dict[int, dict[str, Any]] = {}
        for event in log["events"]:
            params = event.get("params") or {}
            if event["type"] == sent:
                method, path, _ = params["line"].split(" ", 2)
                headers = _header_dict(params["headers"])
                if headers.get("host") == host:
                    by_source[event["source"]["id"]] = {"method": method, "path": path, "request": headers}
            elif event["type"] == received and event["source"]["id"] in by_source:
                status_line, *lines = params["headers"]
                exchange = by_source[event["source"]["id"]]
                exchange["status"] = int(status_line.split(" ")[1])
                exchange["response"] = _header_dict(lines)
        return list(by_source.values())


def _header_dict(lines: list[str]) -> dict[str, str]:
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


def _tokens(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `python tests/services.py` (installs chromium)"
    server = PageServer(PAGE)
    yield server
    server.close()


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    yield browser
    browser.close()


def browse(page_server: PageServer, chromium: Chromium, api: ServerProcess, mode: str, user: str) -> Any:
    while not page_server.reports.empty():  # nothing from an earlier page may pass for this one
        page_server.reports.get_nowait()
    query = urlencode({"api": api.url, "user": user, "mode": mode})
    chromium.open(f"{page_server.origin}/?{query}")
    report = chromium.wait_report(page_server.reports)
    chromium.wait_exit()
    return report


def check_cors(
    exchanges: list[dict[str, Any]], origin: str, allowed_origin: str, wanted: set[str], exposed: set[str]
) -> None:
    """Every preflight the browser sent was answered so that it could go on, some asked for ``wanted``;
    every answer allowed the page's origin and exposed ``exposed`` (PROTOCOL.md section 6)."""
    preflights = [x for x in exchanges if x["method"] == "OPTIONS"]
    assert preflights, "the browser sent no CORS preflight"
    asked: set[str] = set()
    for x in preflights:
        request, response = x["request"], x["response"]
        assert request["origin"] == origin
        assert x["status"] in (200, 204)
        assert response["access-control-allow-origin"] == allowed_origin
        methods = {m.strip() for m in response["access-control-allow-methods"].split(",")}
        assert request["access-control-request-method"] in methods
        requested = _tokens(request.get("access-control-request-headers"))
        assert requested <= _tokens(response["access-control-allow-headers"]), x
        asked |= requested
    assert wanted <= asked, f"no preflight asked for {wanted - asked}: {preflights}"
    calls = [x for x in exchanges if x["method"] != "OPTIONS"]
    assert {x["method"] for x in calls} == {"POST", "GET"}
    for x in calls:
        assert x["response"]["access-control-allow-origin"] == allowed_origin
        assert _tokens(x["response"].get("access-control-expose-headers")) == exposed, x


def check_error(step: dict[str, Any], status: int, code: int) -> None:
    assert step["status"] == status, step
    assert step["answer"]["error"]["code"] == code, step


@pytest.mark.parametrize("allow_origin", ["*", "page origin"])
def test_user_id_mode(page_server: PageServer, chromium: Chromium, allow_origin: str) -> None:
    allowed = page_server.origin if allow_origin == "page origin" else "*"
    with ServerProcess({**FAST, "allow_origin": allowed}, cwd=BASIC_APP) as api:
        report = browse(page_server, chromium, api, "user_id", USER)
    assert "error" not in report, report
    steps = report["steps"]
    user_id = USER.lower()

    for name in ("create", "login"):
        step = steps[name]
        assert step["status"] == 200 and step["answer"]["result"]["user_id"] == user_id, step
        assert step["answer"]["session"]["session_id"] == step["answer"]["result"]["session_id"]
    session_id = steps["login"]["answer"]["result"]["session_id"]
    assert session_id != steps["create"]["answer"]["result"]["session_id"]

    signed = ("whoami", "set", "get", "after")
    for name in ("create", "login", *signed):
        step = steps[name]
        # The page could read x-toto-hmac (exposed), and it matched in WebCrypto and in toto.signing.
        assert "x-toto-hmac" in step["readable_headers"], (name, step)
        assert step["verified"] is True, step
        assert step["signature"] == user_id_hmac(user_id, step["body"].encode("utf-8"))
    for name in signed:
        sent = steps[name]["sent_headers"]
        assert sent["x-toto-session-id"] == session_id
        assert sent["x-toto-hmac"] == user_id_hmac(user_id, steps[name]["sent_body"].encode("utf-8"))

    assert steps["whoami"]["answer"]["result"] == {"user_id": user_id}
    assert steps["set"]["answer"]["result"] == ["greeting"]
    assert steps["get"]["answer"]["result"] == {"greeting": GREETING}
    check_error(steps["tampered"], 200, 1008)
    check_error(steps["unsigned"], 200, 1008)
    assert steps["tampered"]["signature"] is None and steps["tampered"]["verified"] is None
    # Neither refused call ran: the state is what the signed call stored.
    assert steps["after"]["answer"]["result"] == {"greeting": GREETING}

    assert steps["get_echo"] == {"status": 200, "answer": {"result": {"x": ["1", "2"], "y": "é"}}}
    check_error(steps["bad_json"], 400, 1011)
    check_error(steps["bad_type"], 415, 1012)
    check_error(steps["too_large"], 413, 1011)

    host = api.url.removeprefix("http://")
    wanted = {"content-type", "x-toto-hmac", "x-toto-session-id"}
    check_cors(chromium.exchanges(host), page_server.origin, allowed, wanted, {"x-toto-hmac"})


def test_session_key_mode(page_server: PageServer, chromium: Chromium) -> None:
    with ServerProcess({**FAST, "hmac_mode": "session_key"}, cwd=BASIC_APP) as api:
        report = browse(page_server, chromium, api, "session_key", "session-key-browser")
    assert "error" not in report, report
    steps = report["steps"]
    key = decode_session_key(steps["login"]["answer"]["result"]["key"])

    for name in ("create", "login", "whoami", "set", "get", "first", "after"):
        step = steps[name]
        assert {"x-toto-hmac", "x-toto-timestamp"} <= set(step["readable_headers"]), (name, step)
        assert step["verified"] is True, step
        signing_key = decode_session_key(step["answer"]["result"]["key"]) if name in ("create", "login") else key
        assert step["signature"] == session_key_response_hmac(signing_key, step["timestamp"], step["body"].encode())
    whoami = steps["whoami"]["sent_headers"]
    expected = session_key_request_hmac(
        key, "POST", "/whoami", whoami["x-toto-timestamp"], steps["whoami"]["sent_body"].encode("utf-8")
    )
    assert whoami["x-toto-hmac"] == expected

    assert steps["whoami"]["answer"]["result"] == {"user_id": "session-key-browser"}
    assert steps["get"]["answer"]["result"] == {"greeting": GREETING}
    check_error(steps["tampered"], 200, 1008)
    check_error(steps["unsigned"], 200, 1008)
    assert steps["first"]["answer"]["result"] == {"user_id": "session-key-browser"}
    check_error(steps["replayed"], 200, 1015)
    assert steps["after"]["answer"]["result"] == {"greeting": GREETING}

    host = api.url.removeprefix("http://")
    wanted = {"content-type", "x-toto-hmac", "x-toto-session-id", "x-toto-timestamp"}
    check_cors(chromium.exchanges(host), page_server.origin, "*", wanted, {"x-toto-hmac", "x-toto-timestamp"})


def test_off_mode(page_server: PageServer, chromium: Chromium) -> None:
    """No signatures: the session id alone authenticates, and the compat CORS headers stay the same."""
    with ServerProcess({**FAST, "hmac_mode": "off"}, cwd=BASIC_APP) as api:
        report = browse(page_server, chromium, api, "off", "off-mode-browser")
    assert "error" not in report, report
    steps = report["steps"]
    for name in ("create", "login", "whoami", "set", "get", "tampered", "unsigned", "after"):
        step = steps[name]
        assert step["status"] == 200 and "error" not in step["answer"], (name, step)
        assert step["signature"] is None and step["verified"] is None, (name, step)
    assert "x-toto-hmac" not in steps["whoami"]["sent_headers"]
    assert steps["whoami"]["answer"]["result"] == {"user_id": "off-mode-browser"}
    assert steps["get"]["answer"]["result"] == {"greeting": GREETING}
    assert steps["after"]["answer"]["result"] == {"greeting": "unsigned"}  # nothing is refused in this mode

    host = api.url.removeprefix("http://")
    check_cors(
        chromium.exchanges(host), page_server.origin, "*", {"content-type", "x-toto-session-id"}, {"x-toto-hmac"}
    )


def test_other_origin_is_refused_by_the_browser(page_server: PageServer, chromium: Chromium) -> None:
    """allow_origin names another site: the browser itself keeps the page from the server."""
    with ServerProcess({**FAST, "allow_origin": "https://app.example"}, cwd=BASIC_APP) as api:
        report = browse(page_server, chromium, api, "user_id", "refused-browser")
    assert report["error"].startswith("TypeError"), report
    assert report["steps"] == {}
    host = api.url.removeprefix("http://")
    preflights = [x for x in chromium.exchanges(host) if x["method"] == "OPTIONS"]
    assert preflights and all(x["response"]["access-control-allow-origin"] == "https://app.example" for x in preflights)
