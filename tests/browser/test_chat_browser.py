"""Two pages in headless Chromium chat through two Toto servers joined by the Redis event bus:
each page's own JavaScript opens a WebSocket to its server, creates an account, signs its calls
(session_key mode, WebCrypto), subscribes to the room and says a line; both pages hear both lines."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from urllib.parse import urlencode

from toto.testing.server import ServerProcess

from tests.browser.pages import PageServer
from tests.browser.test_cors_browser import Chromium
from tests.redis.conftest import REDIS_HOST, REDIS_PORT, ensure_machine_redis
from tests.websocket.conftest import SOCKETS_APP

PAGE = (Path(__file__).parent / "chat.html").read_bytes()


class ChatPages(PageServer):
    """Serves the chat page, collects the pages' reports, and says "go" (200 to a poll) once both are ready."""

    def __init__(self) -> None:
        self.go = threading.Event()
        super().__init__(PAGE, lambda: 200 if self.go.is_set() else 204)


def test_two_pages_chat_through_two_servers() -> None:
    ensure_machine_redis()
    prefix = f"toto-ws-chat:{uuid.uuid4().hex[:12]}:"
    options = {
        "use_web_sockets": True,
        "socket_method_module": "socket_methods",
        "socket_events": "room",
        "hmac_mode": "session_key",
        "database": "redis",
        "database_url": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        "redis_prefix": prefix,
        "event_bus": "redis",
        "event_url": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        "password_cost": 10,
        "logging": "warning",
    }
    pages = ChatPages()
    browsers = [Chromium(), Chromium()]
    users = ["ada-" + uuid.uuid4().hex[:6], "émile-" + uuid.uuid4().hex[:6]]
    try:
        with ServerProcess(options, cwd=SOCKETS_APP) as a, ServerProcess(options, cwd=SOCKETS_APP) as b:
            for browser, server, user in zip(browsers, (a, b), users):
                query = urlencode({"ws": f"ws://127.0.0.1:{server.port}/websocket", "user": user, "expect": 2})
                browser.open(f"{pages.origin}/?{query}")
            ready = [browsers[0].wait_report(pages.reports) for _ in users]
            assert all("error" not in r for r in ready), ready
            assert sorted(r["user"] for r in ready) == sorted(users)
            assert all(r["ready"] == {"subscribed": ["room"]} for r in ready)
            pages.go.set()
            heard = {r["user"]: r for r in (browsers[0].wait_report(pages.reports) for _ in users)}
            lines = sorted(({"from": user, "text": f"hello from {user} ✓"} for user in users), key=str)
            for user in users:
                assert "error" not in heard[user], heard[user]
                assert sorted(heard[user]["heard"], key=str) == lines
            for server in (a, b):
                assert "Traceback" not in server.output()
    finally:
        for browser in browsers:
            browser.close()
        pages.close()
