"""Answers with the parameters it was given: the same JSON work as the bare Tornado baseline."""

from typing import Any


def invoke(handler: Any, parameters: Any) -> Any:
    return parameters
