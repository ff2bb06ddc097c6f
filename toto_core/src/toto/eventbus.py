"""The interface of event buses, which carry events between requests and servers."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Mapping

#: Called with ``(name, payload, metadata)`` for each event this server receives;
#: ``metadata`` is None for an event sent without any.
EventCallback = Callable[[str, bytes, "Mapping[str, str] | None"], None]

#: Encoded metadata larger than this is refused when sent and dropped when received.
MAX_METADATA = 16 * 1024


class EventBus(abc.ABC):
    """Moves serialized events between the servers of one deployment.

    ``publish(..., broadcast=True)`` reaches every subscribed server, this one
    included; ``broadcast=False`` reaches exactly one live server. Payloads are
    bytes already serialized by the core with a safe serializer. ``metadata`` (text
    keys and values, such as a W3C ``traceparent``) travels beside the payload; an
    event without metadata must keep the bytes it had before buses carried any, and
    the core passes ``metadata`` only when there is some, so a bus written before
    metadata existed keeps working. ``toto.testing.EventBusContract`` is the test
    suite every bus must pass.
    """

    async def open(self) -> None:
        """Connect. Called once before the first publish or subscribe."""

    @abc.abstractmethod
    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Send an event (with ``metadata``, when given, for every receiver)."""

    @abc.abstractmethod
    def subscribe(self, callback: EventCallback) -> None:
        """Deliver every event this server receives to ``callback(name, payload, metadata)``
        on the event loop."""

    async def ping(self) -> bool:
        """True when the bus can carry events now (connected, subscribed); the health
        check (``/_health``) reports the bus as down otherwise. A bus that connects to a
        service must override it."""
        return True

    async def close(self) -> None:
        """Stop receiving and release connections."""


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """Event metadata as bytes for a bus's wire format (a JSON object of strings)."""
    encoded = json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(encoded) > MAX_METADATA:
        raise ValueError(f"event metadata is {len(encoded)} bytes; at most {MAX_METADATA} travel with an event")
    return encoded


def decode_metadata(data: bytes) -> dict[str, str]:
    """The metadata of ``encode_metadata``; ``ValueError`` when it is not an object of strings."""
    if len(data) > MAX_METADATA:
        raise ValueError("event metadata is too large")
    value = json.loads(data.decode("utf-8"))
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("event metadata must be an object of strings")
    return value
