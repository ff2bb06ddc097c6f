"""The interface of event buses, which carry events between requests and servers."""

from __future__ import annotations

import abc
from collections.abc import Callable

#: Called with ``(name, payload)`` for each event this server receives.
EventCallback = Callable[[str, bytes], None]


class EventBus(abc.ABC):
    """Moves serialized events between the servers of one deployment.

    ``publish(..., broadcast=True)`` reaches every subscribed server, this one
    included; ``broadcast=False`` reaches exactly one live server. Payloads are
    bytes already serialized by the core with a safe serializer.
    ``toto.testing.EventBusContract`` is the test suite every bus must pass.
    """

    async def open(self) -> None:
        """Connect. Called once before the first publish or subscribe."""

    @abc.abstractmethod
    async def publish(self, name: str, payload: bytes, broadcast: bool = True) -> None:
        """Send an event."""

    @abc.abstractmethod
    def subscribe(self, callback: EventCallback) -> None:
        """Deliver every event this server receives to ``callback`` on the event loop."""

    async def close(self) -> None:
        """Stop receiving and release connections."""
