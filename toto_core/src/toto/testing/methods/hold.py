"""Never answers: a call that waits until its client goes away."""

from __future__ import annotations

from typing import Any

from toto.invocation import asynchronous


@asynchronous
def invoke(handler: Any, parameters: Any) -> None:
    return None
