"""Adds one to session["count"] and saves the state: a read-modify-write that must lose no update."""

from __future__ import annotations

from typing import Any

from toto.invocation import authenticated


@authenticated
def invoke(handler: Any, parameters: Any) -> int:
    session = handler.session
    session["count"] = session.get("count", 0) + 1
    session.save_state()
    return int(session["count"])
