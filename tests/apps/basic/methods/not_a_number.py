"""Answers floats that JSON cannot carry (NaN, Infinity): the server must never write them."""


def invoke(handler, parameters):
    return {"nan": float("nan"), "inf": float("inf")}
