"""Answers how many requests the server has in flight besides this one (begun, not yet ended)."""

from __future__ import annotations

from typing import Any


def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    return {"in_flight": len(handler.server.in_flight) - 1}
