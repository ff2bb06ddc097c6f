"""Adds two integers."""

from typing import TypedDict


class Numbers(TypedDict):
    a: int
    b: int


def invoke(handler, parameters: Numbers) -> int:
    return parameters["a"] + parameters["b"]
