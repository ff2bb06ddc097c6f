"""The hooks toto-otel implements (entry point ``toto``: ``otel = "toto_otel.plugin"``).

Every Toto server loads this module, so it imports OpenTelemetry only when a server
starts, in each process of a group after the fork (the SDK's export thread does not
survive a fork). Until then, and in a server that does not trace, every hook returns
at its first line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toto import hookimpl

if TYPE_CHECKING:
    from toto_otel.tracing import Tracing

#: This process's tracing, or None while it does not trace.
_tracing: Tracing | None = None


@hookimpl
def toto_add_options(options: Any) -> None:
    group = "toto-otel"
    options.define(
        "otel_user_id",
        "omit",
        str,
        "the caller's user id on server spans: omit, or hash (HMAC-SHA256 with otel_user_id_key)",
        choices=("omit", "hash"),
        group=group,
    )
    options.define(
        "otel_user_id_key", "", str, "secret key of otel_user_id=hash, the same on every server", group=group
    )
    options.define(
        "otel_instrument_storage",
        True,
        bool,
        "trace storage calls with the driver's instrumentation package, when it is installed",
        group=group,
    )


@hookimpl
def toto_wrap_storage(server: Any) -> None:
    from toto_otel import tracing

    if tracing.configure_sdk():
        tracing.instrument_before_open(server)


@hookimpl
def toto_startup(server: Any) -> None:
    global _tracing
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import get_tracer_provider

    from toto_otel import tracing

    if isinstance(get_tracer_provider(), TracerProvider):
        tracing.instrument_after_open(server)
        _tracing = tracing.Tracing(server)


@hookimpl
def toto_shutdown(server: Any) -> None:
    global _tracing
    if _tracing is None:
        return
    _tracing = None
    from opentelemetry.trace import get_tracer_provider

    provider: Any = get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(5000)


@hookimpl
def toto_request_started(handler: Any) -> None:
    if _tracing is not None:
        _tracing.request_started(handler)


@hookimpl
def toto_request_finished(handler: Any, method: str | None, batch: int | None, status: int, error: Any) -> None:
    if _tracing is not None:
        _tracing.request_finished(handler, method, batch, status, error)


@hookimpl
def toto_before_invoke(method: str) -> None:
    if _tracing is not None:
        _tracing.call_started(method)


@hookimpl
def toto_after_invoke(error: Any) -> None:
    if _tracing is not None:
        _tracing.call_finished(error)


@hookimpl
def toto_event_sending(metadata: Any) -> None:
    if _tracing is not None:
        _tracing.event_sending(metadata)


@hookimpl
def toto_event_received(name: str, metadata: Any) -> Any:
    if _tracing is not None:
        return _tracing.event_received(name, metadata)
    return None
