"""Spans of one serving process: a server span per request, a child per method call, a
consumer span per traced event, and storage calls by the drivers' instrumentation packages."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import importlib.util
import logging
import os
from contextvars import ContextVar
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from toto.exceptions import PluginError
from toto.plugins import install_command

log = logging.getLogger("toto.otel")

_TRACER = "toto"
#: The method label of a batch request, and of one naming no method that exists.
BATCH, UNKNOWN = "(batch)", "(unknown)"


class RequestTrace:
    """The server span of one request, its context token, and the method spans still open."""

    __slots__ = ("open", "span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token
        self.open: set[Any] = set()


#: The request being served by this task (batch entries' tasks inherit it).
_request: ContextVar[RequestTrace | None] = ContextVar("toto_otel_request", default=None)
#: The method call of this task: its span and context token.
_call: ContextVar[tuple[Any, Any] | None] = ContextVar("toto_otel_call", default=None)


def configure_sdk() -> bool:
    """Give the process an SDK tracer provider chosen by the standard ``OTEL_*`` variables,
    unless the application set its own. False when tracing stays off (no exporter named,
    or ``OTEL_SDK_DISABLED``)."""
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return True  # the application's own provider, with its own exporters
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not exporters and not endpoint:
        log.info("toto-otel: no OTEL_TRACES_EXPORTER or OTLP endpoint set; not tracing")
        return False
    if exporters.lower() == "none":
        return False
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
    try:
        span_exporters, _, _ = _import_exporters(_get_exporter_names("traces"), [], [])
    except (RuntimeError, ValueError) as error:
        raise PluginError(f"toto-otel: OTEL_TRACES_EXPORTER={exporters!r}: {error}") from None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "toto"}))
    provider = TracerProvider(resource=resource, sampler=_sampler())
    for exporter in span_exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    trace.set_tracer_provider(provider)
    return True


def _sampler() -> Any:
    """The sampler of ``OTEL_TRACES_SAMPLER``, except that a client call outside any span (a
    storage purge, an event bus polling Redis) starts no trace of its own."""
    from opentelemetry.sdk.trace import sampling

    chosen = sampling._get_from_env_or_default()

    class RequestsOnly(sampling.Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> Any:
            if kind == SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return sampling.SamplingResult(sampling.Decision.DROP)
            return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"RequestsOnly({chosen.get_description()})"

    return RequestsOnly()


class Tracing:
    """What the hooks of ``toto_otel.plugin`` call, for one serving process."""

    def __init__(self, server: Any) -> None:
        o = server.options
        self.tracer = trace.get_tracer(_TRACER)
        self.user_ids = str(o.otel_user_id)
        self.user_key = str(o.otel_user_id_key or "").encode("utf-8")
        if self.user_ids == "hash" and not self.user_key:
            raise PluginError(
                "otel_user_id=hash needs otel_user_id_key: a secret every server of the deployment shares, "
                "so a hash cannot be reversed by hashing guessed user ids"
            )

    # -- requests -----------------------------------------------------------------------------
    def request_started(self, handler: Any) -> None:
        request = handler.request
        # Most requests carry no trace context; extracting nothing is not free.
        parent = propagate.extract(request.headers) if "traceparent" in request.headers else None
        span = self.tracer.start_span(
            request.method or "GET",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "toto", "http.request.method": request.method, "url.path": request.path},
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        _request.set(RequestTrace(span, token))

    def request_finished(self, handler: Any, method: str | None, batch: int | None, status: int, error: Any) -> None:
        current = _request.get()
        if current is None:
            return
        _request.set(None)
        span = current.span
        name = BATCH if batch is not None else method or UNKNOWN
        span.update_name(name)
        span.set_attribute("rpc.method", name)
        span.set_attribute("http.response.status_code", status)
        if batch is not None:
            span.set_attribute("toto.batch.size", batch)
        user = self.user_attribute(handler)
        if user is not None:
            span.set_attribute("enduser.id", user)
        if error is not None:
            _failed(span, error)
        elif status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        for left in current.open:  # calls cut short when the client went away
            left.set_status(Status(StatusCode.ERROR, "the client went away"))
            left.end()
        current.open.clear()
        span.end()
        context.detach(current.token)

    def user_attribute(self, handler: Any) -> str | None:
        if self.user_ids != "hash":
            return None
        session = handler.session
        user_id = session.user_id if session is not None else None
        if not user_id:
            return None
        return hmac.new(self.user_key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # -- method calls -------------------------------------------------------------------------
    def call_started(self, method: str) -> None:
        current = _request.get()
        if current is None:
            return
        span = self.tracer.start_span(method, attributes={"rpc.system": "toto", "rpc.method": method})
        current.open.add(span)
        _call.set((span, context.attach(trace.set_span_in_context(span))))

    def call_finished(self, error: Any) -> None:
        call = _call.get()
        if call is None:
            return
        _call.set(None)
        span, token = call
        if error is not None:
            _failed(span, error)
        span.end()
        context.detach(token)
        current = _request.get()
        if current is not None:
            current.open.discard(span)

    # -- events -------------------------------------------------------------------------------
    @staticmethod
    def event_sending(metadata: dict[str, str]) -> None:
        propagate.inject(metadata)

    def event_received(self, name: str, metadata: Any) -> Any:
        if "traceparent" not in metadata:
            return None
        return self.tracer.start_as_current_span(
            "toto event",
            context=propagate.extract(metadata),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "toto",
                "messaging.operation.type": "process",
                "messaging.destination.name": name,
            },
        )


def _failed(span: Any, error: Any) -> None:
    code = error.get("code")
    span.set_attribute("toto.error.code", code if isinstance(code, int) else str(code))
    span.set_status(Status(StatusCode.ERROR, f"error {code}"))


# -- storage calls as child spans, by the drivers' own instrumentation packages --------------------

#: Instrumentation package (module) and how it instruments, by the storage's driver.
INSTRUMENTATIONS = {
    "redis": "opentelemetry.instrumentation.redis",
    "sqlalchemy": "opentelemetry.instrumentation.sqlalchemy",
    "pymongo": "opentelemetry.instrumentation.pymongo",
}
#: Which driver each database uses, and the extra that installs its instrumentation.
DRIVERS = {
    "redis": ("redis", "toto-otel[redis]"),
    "sqlite": ("sqlalchemy", "toto-otel[sql]"),
    "postgres": ("sqlalchemy", "toto-otel[sql]"),
    "postgresql": ("sqlalchemy", "toto-otel[sql]"),
    "mysql": ("sqlalchemy", "toto-otel[sql]"),
    "mariadb": ("sqlalchemy", "toto-otel[sql]"),
    "mongodb": ("pymongo", "toto-otel[mongo]"),
    "mongo": ("pymongo", "toto-otel[mongo]"),
}


def instrument_before_open(server: Any) -> None:
    """Client libraries instrumented before the storage connects (redis-py, pymongo)."""
    driver = _driver(server)
    if driver == "redis" or server.options.event_bus == "redis":
        _instrument("redis", lambda module: module.RedisInstrumentor().instrument())
    if driver == "pymongo":
        _instrument("pymongo", lambda module: module.PymongoInstrumentor().instrument())


def instrument_after_open(server: Any) -> None:
    """Engines instrumented once the storage made them (SQLAlchemy)."""
    if _driver(server) == "sqlalchemy":
        engine = getattr(server.storage, "db", None)
        sync_engine = getattr(engine, "sync_engine", engine)
        if sync_engine is not None:
            _instrument("sqlalchemy", lambda module: module.SQLAlchemyInstrumentor().instrument(engine=sync_engine))


def _driver(server: Any) -> str | None:
    if not server.options.otel_instrument_storage:
        return None
    found = DRIVERS.get(str(server.options.database))
    if found is None:
        return None
    driver, extra = found
    if importlib.util.find_spec(INSTRUMENTATIONS[driver]) is None:
        log.info("toto-otel: storage calls are not traced; %s traces them", install_command(extra))
        return None
    return driver


def _instrument(driver: str, how: Any) -> None:
    if importlib.util.find_spec(INSTRUMENTATIONS[driver]) is None:
        return
    module = importlib.import_module(INSTRUMENTATIONS[driver])
    try:
        how(module)
    except Exception as error:  # an instrumentation that does not fit the installed driver
        log.warning("toto-otel: could not instrument %s: %s", driver, error)
