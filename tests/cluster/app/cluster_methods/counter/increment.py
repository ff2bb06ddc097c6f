"""Adds one to the session's count and saves it: an acknowledged answer is a write that must stay."""

from __future__ import annotations

from typing import Any

from toto.invocation import authenticated


@authenticated
def invoke(handler: Any, parameters: Any) -> int:
    session = handler.session
    session["count"] = session.get("count", 0) + 1
    session.save_state()
    return int(session["count"])
