"""Answers whether a ``marks.add`` call with ``token`` has run in this process."""

from __future__ import annotations

from typing import Any

from toto.testing.methods.marks import MARKS


def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    return {"seen": str(parameters.get("token")) in MARKS}
