"""aiohttp as a peer: ``python bench/servers/aiohttp_echo.py PORT LOOP [app|bare]``.

``app`` (the peer row) is how an aiohttp user writes it: a ``web.Application`` route,
``request.json()`` and ``web.json_response``. ``bare`` (a ceiling) is aiohttp's
low-level ``web.Server`` with one handler and no router, doing only the JSON work.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web
from echo_work import answer, encode, new_event_loop


async def echo(request: web.Request) -> web.Response:
    data = await request.json()
    return web.json_response({"result": data.get("parameters", {})}, dumps=encode)


async def bare_echo(request: web.BaseRequest) -> web.Response:
    return web.Response(body=answer(await request.read()), content_type="application/json")


async def serve(port: int, kind: str) -> None:
    if kind == "bare":
        runner: web.BaseRunner = web.ServerRunner(web.Server(bare_echo, access_log=None))
    else:
        app = web.Application()
        app.router.add_post("/", echo)
        runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    loop = new_event_loop(sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    asyncio.set_event_loop(loop)
    loop.run_until_complete(serve(int(sys.argv[1]), sys.argv[3] if len(sys.argv) > 3 else "app"))
