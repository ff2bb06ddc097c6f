"""The API explorer page and the OpenAPI document, as routes (on with the ``describe`` option).

The page is static: ``index.html``, ``explorer.js`` and ``explorer.css`` next to this file,
and ``toto-client.js``, the same file as the npm package ``toto-client`` (clients/js), so the
page signs and checks answers exactly as that client does. No build step.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from toto.http import Request, Response, Route

if TYPE_CHECKING:
    from toto.server import TotoServer

_STATIC = {
    "explorer.js": "text/javascript; charset=utf-8",
    "toto-client.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
}
#: The page talks only to its own server and runs only its own scripts.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> bytes:
    return (resources.files("toto") / "explorer" / name).read_bytes()


def routes(server: TotoServer) -> list[Route]:
    """``openapi.json``, ``_explorer`` and the page's files, each answered from bytes made once."""
    prefix = "/" + server.options.root.strip("/") if server.options.root.strip("/") else ""
    page = _file("index.html").replace(b"{{prefix}}", prefix.encode("utf-8"))
    answers = {"_explorer": Response(200, page, {"Content-Type": "text/html; charset=utf-8", **_PAGE_HEADERS})}
    for name, content_type in _STATIC.items():
        answers[f"_explorer/{name}"] = Response(200, _file(name), {"Content-Type": content_type, **_PAGE_HEADERS})
    openapi: list[Response] = []

    def static(request: Request) -> Response:
        return answers[request.route_path]

    def document(request: Request) -> Response:
        # Made on first use: the catalogue is walked when the server starts, after routes are registered.
        if not openapi:
            openapi.append(Response.json(server.openapi))
        return openapi[0]

    return [
        Route("openapi.json", document, name="openapi"),
        *(Route(path, static, name="explorer") for path in answers),
    ]
