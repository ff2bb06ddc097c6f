"""A NATS event bus for Toto: ``--event_bus=nats`` (with ``--nats_jetstream`` for at-least-once delivery)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toto_nats.eventbus import NatsEventBus

__version__ = "0.1.0"

__all__ = ["NatsEventBus", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Toto loads this package in every server (see plugin.py).
    if name == "NatsEventBus":
        from toto_nats.eventbus import NatsEventBus

        return NatsEventBus
    raise AttributeError(f"module 'toto_nats' has no attribute {name!r}")
