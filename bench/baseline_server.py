"""The baseline: a bare Tornado ``RequestHandler`` doing the JSON work of Toto's echo.

It parses the body, builds ``{"result": parameters}`` and serializes it the way Toto
does (compact, ASCII-only), and nothing else: no method lookup, sessions, CORS or
signing. ``python bench/baseline_server.py PORT [asyncio|uvloop]``; the benchmark gives
it the event loop Toto runs on, so the ratio compares request paths, not loops.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class EchoHandler(RequestHandler):
    def post(self) -> None:
        request: Any = json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.finish(_encoder.encode({"result": request.get("parameters", {})}).encode("ascii"))


async def main(port: int) -> None:
    server = HTTPServer(Application([(r"/", EchoHandler)]))
    server.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


if __name__ == "__main__":
    loop = new_event_loop(sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(int(sys.argv[1])))
