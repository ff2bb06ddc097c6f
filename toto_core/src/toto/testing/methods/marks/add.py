"""Records ``token`` as having run (a form gives it as a list of one value)."""

from __future__ import annotations

from typing import Any

from toto.testing.methods.marks import MARKS


def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    token = parameters.get("token")
    if isinstance(token, list):
        token = token[0] if token else None
    MARKS.add(str(token))
    return {"marked": str(token)}
