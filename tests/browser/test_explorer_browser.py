"""The API explorer page (issue 16) in headless Chromium, driven through the DevTools protocol.

The test types and clicks as a person would (Input.* events at the element's place on the
page): create an account, log in, a signed call, a batch, a refused call; then checks what
the page shows against the server and toto.signing. A screenshot of each run goes to
tests/browser/results/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import websocket_connect
from toto.signing import NONCE, decode_session_key, session_key_request_hmac, user_id_hmac
from toto.testing.server import ServerProcess

from tests.browser.test_cors_browser import CHROMIUM, CHROMIUM_FLAGS, Chromium
from tests.explorer.conftest import DESCRIBED, TYPED_APP, http

RESULTS = Path(__file__).parent / "results"
WAIT = 60.0  # generous: the machine may be busy; waits poll for an outcome


class DevTools:
    """One page of a Chromium started with --remote-debugging-port, spoken to over its WebSocket."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        self.ids = itertools.count(1)
        self.connection: Any = None

    async def connect(self) -> None:
        port_file = Path(self.browser.dir.name) / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline:
                pytest.fail(f"chromium opened no DevTools port:\n{self.browser.log()}")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        while True:
            _, _, listing = http(f"http://127.0.0.1:{port}/json/list")
            pages = [t for t in json.loads(listing) if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self.connection = await websocket_connect(pages[0]["webSocketDebuggerUrl"], max_message_size=64 << 20)

    async def send(self, method: str, **params: Any) -> Any:
        ident = next(self.ids)
        await self.connection.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = await self.connection.read_message()
            if message is None:
                pytest.fail(f"DevTools connection closed during {method}:\n{self.browser.log()}")
            reply = json.loads(message)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        shown = await self.evaluate("document.body.innerText")
        pytest.fail(f"the page never showed {what}; it shows:\n{shown}")

    async def click(self, selector: str) -> None:
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        await self.send("Input.insertText", text=text)

    async def text(self, selector: str) -> str:
        return str(await self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent"))

    async def screenshot(self, path: Path) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=1280, height=1400, deviceScaleFactor=1, mobile=False
        )
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def open_devtools_browser(url: str) -> Chromium:
    browser = Chromium()
    home = browser.dir.name
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_DATA_HOME=home)
    command = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={os.path.join(home, 'profile')}",
        "--remote-debugging-port=0",
        "--window-size=1280,1400",
        url,
    ]
    with open(browser.logfile, "wb") as log:
        browser.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return browser


async def click_through(page: DevTools, mode: str, user: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    await page.connect()
    await page.send("Runtime.enable")
    await page.wait("document.body && document.body.dataset.ready === 'true'", "the method list")
    seen["methods"] = await page.evaluate(
        "[...document.querySelectorAll('#methods button')].map(b => b.dataset.method)"
    )
    assert mode in await page.text("#server-info")

    await page.type("#user-id", user)
    await page.type("#password", "explorer-pw")
    await page.click("#create")
    await page.wait(f"document.querySelector('#session').textContent.includes({json.dumps(user.lower())})", "a session")
    seen["created"] = json.loads(await page.text("#session"))
    await page.click("#login")
    await page.wait(
        f"!document.querySelector('#session').textContent.includes({json.dumps(seen['created']['session_id'])})",
        "the new session of the login",
    )
    seen["login"] = json.loads(await page.text("#session"))

    await page.click('#methods button[data-method="notes.add"]')
    await page.wait("document.querySelector('#method-name').textContent === 'notes.add'", "notes.add picked")
    seen["notes.add schema"] = await page.text("#parameters-schema")
    await page.type("#parameters", json.dumps({"title": "from the explorer", "tags": ["page"]}))
    await page.click("#call")
    await page.wait("document.querySelector('#answer').textContent.includes('count')", "the answer of notes.add")
    seen["call"] = {
        "answer": json.loads(await page.text("#answer")),
        "request_headers": json.loads(await page.text("#request-headers")),
        "response_headers": json.loads(await page.text("#response-headers")),
        "exchange": await page.evaluate("window.explorer.client.lastExchange"),
    }

    await page.click('#methods button[data-method="add"]')
    await page.wait("document.querySelector('#method-name').textContent === 'add'", "add picked")
    await page.type("#parameters", json.dumps({"a": 2, "b": 3}))
    await page.click("#add-to-batch")
    await page.click('#methods button[data-method="notes.list"]')
    await page.wait("document.querySelector('#method-name').textContent === 'notes.list'", "notes.list picked")
    await page.click("#add-to-batch")
    await page.wait("document.querySelectorAll('#batch-list li').length === 2", "two calls in the batch")
    await page.click("#send-batch")
    await page.wait("document.querySelector('#answer').textContent.includes('batch')", "the batch answer")
    seen["batch"] = json.loads(await page.text("#answer"))

    await page.click('#methods button[data-method="add"]')
    await page.type("#parameters", json.dumps({"a": "two", "b": 3}))
    await page.click("#call")
    await page.wait("document.querySelector('#error-message').textContent.includes('1003')", "the refused call")
    seen["refused"] = await page.text("#error-message")
    assert await page.text("#status") == "HTTP 200" and "1003" in await page.text("#answer")

    # Parameters that are not JSON never leave the page: the answer and status of the call
    # before must not stay on screen as if they were this one's.
    await page.type("#parameters", '{"a": 1,')
    await page.click("#call")
    await page.wait("document.querySelector('#error-message').textContent.includes('not JSON')", "the JSON error")
    seen["not json"] = {name: await page.text(f"#{name}") for name in ("status", "answer", "response-headers")}
    await page.screenshot(RESULTS / f"explorer-{mode}.png")
    return seen


@pytest.mark.parametrize("mode", ["user_id", "session_key", "off"])
def test_explorer_click_through(mode: str) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `python tests/services.py` (installs chromium)"
    user = f"Explorer-{mode}"
    with ServerProcess({**DESCRIBED, "hmac_mode": mode}, cwd=TYPED_APP) as api:
        browser = open_devtools_browser(api.url + "/_explorer")
        try:
            seen = asyncio.run(click_through(DevTools(browser), mode, user))
        finally:
            browser.close()
        # The account the page created is on the server, with the password typed into the page.
        client = api.client(hmac_mode=mode)
        assert client.login(user, "explorer-pw")["user_id"] == user.lower()
        assert " ERROR " not in api.output(), api.output()

    assert {"add", "notes.add", "notes.list", "account.create", "toto.describe"} <= set(seen["methods"])
    assert seen["created"]["user_id"] == user.lower() and seen["login"]["session_id"] != seen["created"]["session_id"]
    assert (mode == "session_key") == ("key" in seen["login"])
    assert '"title"' in seen["notes.add schema"]

    call = seen["call"]
    assert call["answer"]["result"] == {"count": 1}
    assert call["request_headers"]["x-toto-session-id"] == seen["login"]["session_id"]
    sent = call["exchange"]["request"]
    body = sent["body"].encode("utf-8")
    if mode == "user_id":
        assert sent["headers"]["x-toto-hmac"] == user_id_hmac(user.lower(), body)
    elif mode == "session_key":
        key = decode_session_key(seen["login"]["key"])
        stamp, nonce = sent["headers"]["x-toto-timestamp"], sent["headers"]["x-toto-nonce"]
        assert NONCE.match(nonce), nonce
        assert sent["headers"]["x-toto-hmac"] == session_key_request_hmac(key, "POST", "/notes/add", stamp, body, nonce)
    else:
        assert "x-toto-hmac" not in call["request_headers"]
    assert ("x-toto-hmac" in call["response_headers"]) == (mode != "off")

    batch = seen["batch"]["batch"]
    assert batch["call1"] == {"result": 5}
    assert batch["call2"]["result"] == [{"title": "from the explorer", "tags": ["page"], "priority": "low"}]
    assert seen["refused"] == "error 1003: \"Invalid parameter 'a': expected int, got str\""
    assert seen["not json"] == {"status": "", "answer": "", "response-headers": ""}
    assert (RESULTS / f"explorer-{mode}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
