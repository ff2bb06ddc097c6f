"""The hooks toto-prometheus implements (entry point ``toto``: ``prometheus = "toto_prometheus.plugin"``).

Every Toto server loads this module, so it imports prometheus-client only when a server
starts (``toto_prometheus.metrics``), in each process of a group after the fork.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import TYPE_CHECKING, Any

from toto import hookimpl
from toto.http import Request, Response, Route

if TYPE_CHECKING:
    from toto_prometheus.metrics import Metrics

log = logging.getLogger("toto.prometheus")

#: The exposition format prometheus-client writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The metrics of this serving process (one server a process).
_metrics: Metrics | None = None


def metrics_of(server: Any) -> Metrics:
    """This process's metrics, made on first use at startup."""
    global _metrics
    if _metrics is None or _metrics.server is not server:
        directory = multiprocess_directory(server)  # before prometheus_client is imported
        from toto_prometheus.metrics import Metrics

        _metrics = Metrics(server, directory)
    return _metrics


def multiprocess_directory(server: Any) -> str | None:
    """Where a process group keeps its metrics: ``PROMETHEUS_MULTIPROC_DIR`` when the
    operator set it, else a folder of the group's own directory; None for a lone server.

    prometheus-client reads the variable when it is imported, which is why this module
    does not import it.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    if configured:
        return configured
    if server.group_dir is None:
        return None
    directory = os.path.join(server.group_dir, "prometheus")
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


@hookimpl
def toto_add_options(options: Any) -> None:
    group = "toto-prometheus"
    options.define(
        "prometheus_port",
        0,
        int,
        "serve the metrics on this port of their own (every process of a group shares it), at prometheus_address; "
        "0: on the API port, and only with prometheus_token",
        group=group,
    )
    options.define(
        "prometheus_address",
        "127.0.0.1",
        str,
        "address of prometheus_port (an internal interface; empty: the server's address)",
        group=group,
    )
    options.define(
        "prometheus_token",
        "",
        str,
        "a secret the scraper sends as 'Authorization: Bearer <token>' (needed to serve the metrics on the API port)",
        group=group,
    )
    options.define("prometheus_path", "metrics", str, "path of the metrics page", group=group)


def where(server: Any) -> str:
    """Where this server's metrics are and who may read them, in one line (logged at startup).

    The page lists every method's name and traffic, so it is not public by default: it is
    served on a port of its own (``prometheus_port``, on ``prometheus_address``, loopback
    unless told otherwise), or on the API port to scrapers that send ``prometheus_token``,
    or not at all.
    """
    o = server.options
    path = "/" + str(o.prometheus_path).strip("/")
    token = "; scrapers send Authorization: Bearer <prometheus_token>" if o.prometheus_token else ""
    if int(o.prometheus_port):
        address = o.prometheus_address or o.address or "0.0.0.0"
        return (
            f"toto-prometheus: metrics on http://{address}:{int(o.prometheus_port)}{path}, a port of their own{token}"
        )
    if o.prometheus_token:
        return f"toto-prometheus: metrics on the API port at {path}{token}"
    return (
        "toto-prometheus: metrics are not served (they list every method): set prometheus_port "
        "(a port of their own, on prometheus_address) or prometheus_token (on the API port, with a bearer token)"
    )


@hookimpl
def toto_register_routes(server: Any) -> list[Route]:
    if int(server.options.prometheus_port) or not server.options.prometheus_token:
        return []
    return [Route(str(server.options.prometheus_path), _page(server), name="prometheus metrics")]


def _page(server: Any) -> Any:
    token = str(server.options.prometheus_token)
    expected = f"Bearer {token}".encode()

    async def page(request: Request) -> Response:
        if token:
            sent = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(sent, expected):
                answer = Response.json({"error": {"code": 1004, "value": "Metrics need the prometheus_token."}}, 401)
                answer.headers["WWW-Authenticate"] = 'Bearer realm="toto-prometheus"'
                return answer
        body = await metrics_of(server).scrape()
        return Response(200, body, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    return page


@hookimpl
def toto_wrap_storage(server: Any, storage: Any) -> Any:
    metrics = metrics_of(server)
    from toto_prometheus.metrics import TimedStorage

    return TimedStorage(storage, metrics)


@hookimpl
def toto_startup(server: Any) -> None:
    metrics_of(server)
    port = int(server.options.prometheus_port)
    if port:
        _serve_own_port(server, port)
    if port or server.options.prometheus_token:
        log.info("%s", where(server))
    else:
        log.warning("%s", where(server))


def _serve_own_port(server: Any, port: int) -> None:
    from tornado import web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    page = _page(server)

    class MetricsHandler(web.RequestHandler):
        async def get(self) -> None:
            answer = await page(Request("GET", self.request.path, self.request.query, self.request.headers))
            self.set_status(answer.status)
            for name, value in answer.headers.items():
                self.set_header(name, value)
            self.finish(answer.body)

    path = "/" + str(server.options.prometheus_path).strip("/")
    address = server.options.prometheus_address or server.options.address or None
    # Shared by every process of a group: whichever answers shows the whole group.
    sockets = bind_sockets(port, address, reuse_port=True)
    metrics_server = HTTPServer(web.Application([(path, MetricsHandler)]))
    metrics_server.add_sockets(sockets)
    server.prometheus_server = metrics_server


@hookimpl
def toto_shutdown(server: Any) -> None:
    metrics_server = getattr(server, "prometheus_server", None)
    if metrics_server is not None:
        metrics_server.stop()


@hookimpl
def toto_request_started(handler: Any) -> None:
    if _metrics is not None:
        _metrics.in_flight.inc()


@hookimpl
def toto_request_finished(method: str | None, batch: int | None, error: Any, seconds: float) -> None:
    if _metrics is not None:
        _metrics.request_finished(method, batch, error, seconds)


@hookimpl
def toto_after_invoke(method: str, error: Any) -> None:
    if _metrics is not None:
        _metrics.call_finished(method, error)


@hookimpl
def toto_event_sending(broadcast: bool) -> None:
    if _metrics is not None:
        _metrics.event_published(broadcast)


@hookimpl
def toto_event_received() -> None:
    if _metrics is not None:
        _metrics.events_delivered.inc()
