"""The baseline: a bare Tornado ``RequestHandler`` doing the JSON work of Toto's echo.

No method lookup, sessions, CORS or signing: ``python bench/servers/tornado_echo.py
PORT [asyncio|uvloop]``. The benchmark gives it the event loop Toto runs on, so the
ratio compares request paths, not loops.
"""

from __future__ import annotations

import asyncio
import sys

from echo_work import answer, new_event_loop
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler


class EchoHandler(RequestHandler):
    def post(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(answer(self.request.body))


async def main(port: int) -> None:
    server = HTTPServer(Application([(r"/", EchoHandler)]))
    server.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    loop = new_event_loop(sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(int(sys.argv[1])))
