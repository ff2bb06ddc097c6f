"""The hooks toto-otel implements (entry point ``toto``: ``otel = "toto_otel.plugin"``).

Every Toto server loads this module, so it imports OpenTelemetry only when a server
starts, in each process of a group after the fork (the SDK's export thread does not
survive a fork). The hooks on the request path live in :mod:`toto_otel.active`, which
``toto_startup`` registers only in a server that traces: a server that does not trace
calls none of them (the core skips hooks that have no implementation).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from toto import hookimpl

if TYPE_CHECKING:
    from toto_otel.tracing import Tracing

#: This process's tracing, or None while it does not trace.
_tracing: Tracing | None = None

#: The name the request-path hooks are registered under in a tracing server's plugin manager.
ACTIVE = "otel-active"


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

    from toto_otel import active, tracing

    if isinstance(get_tracer_provider(), TracerProvider):
        tracing.instrument_after_open(server)
        _tracing = active.tracing = tracing.Tracing(server)
        if server.pm.get_plugin(ACTIVE) is None:
            server.pm.add(active, ACTIVE, server.pm.label(sys.modules[__name__]))


@hookimpl
def toto_shutdown(server: Any) -> None:
    global _tracing
    if _tracing is None:
        return
    from toto_otel import active

    _tracing = active.tracing = None
    if server.pm.get_plugin(ACTIVE) is not None:
        server.pm.unregister(name=ACTIVE)
    from opentelemetry.trace import get_tracer_provider

    provider: Any = get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(5000)
