"""The request-path hooks of toto-otel, registered by ``toto_startup`` only in a server
that traces (see :mod:`toto_otel.plugin`), so a server that does not trace pays nothing
for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toto import hookimpl

if TYPE_CHECKING:
    from toto_otel.tracing import Tracing

#: This process's tracing (set by ``toto_startup``, cleared by ``toto_shutdown``).
tracing: Tracing | None = None


@hookimpl
def toto_request_started(handler: Any) -> None:
    if tracing is not None:
        tracing.request_started(handler)


@hookimpl
def toto_request_finished(handler: Any, method: str | None, batch: int | None, status: int, error: Any) -> None:
    if tracing is not None:
        tracing.request_finished(handler, method, batch, status, error)


@hookimpl
def toto_before_invoke(method: str) -> None:
    if tracing is not None:
        tracing.call_started(method)


@hookimpl
def toto_after_invoke(error: Any) -> None:
    if tracing is not None:
        tracing.call_finished(error)


@hookimpl
def toto_event_sending(metadata: Any) -> None:
    if tracing is not None:
        tracing.event_sending(metadata)


@hookimpl
def toto_event_received(name: str, metadata: Any) -> Any:
    if tracing is not None:
        return tracing.event_received(name, metadata)
    return None
