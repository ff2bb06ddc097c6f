"""Answers the ``feed`` events this server received from index ``from`` on, and its boot id."""

from __future__ import annotations

from typing import Any

import cluster_feed


def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    start = int(parameters.get("from", 0))
    return {"boot": cluster_feed.BOOT, "events": cluster_feed.RECEIVED[start : start + 5000]}
