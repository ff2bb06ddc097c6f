"""What this server received of the suite's ``feed`` events (``--event_init_module=cluster_feed``).

A persistent handler, registered before the server listens, appends every ``feed`` event to
``RECEIVED`` in arrival order; ``feed.since`` reads it. ``BOOT`` names this process, so that a
reader sees when a server was restarted (and its list started over).
"""

from __future__ import annotations

import uuid
from typing import Any

BOOT = uuid.uuid4().hex
RECEIVED: list[Any] = []


def invoke(event_manager: Any) -> None:
    event_manager.register_handler("feed", RECEIVED.append, persist=True)
