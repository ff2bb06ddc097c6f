"""Answers the caller's user id (signed-in callers only)."""

from __future__ import annotations

from typing import Any

from toto.invocation import authenticated


@authenticated
def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    return {"user_id": handler.session.user_id}
