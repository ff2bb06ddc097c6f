"""Answers the type of the storage's native handle (``handler.connection.db``)."""

from __future__ import annotations

from typing import Any


def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    return {"type": type(handler.connection.db).__name__}
