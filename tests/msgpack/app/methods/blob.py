"""Answers binary data: parameters["size"] bytes counting up from 0 (mod 256)."""


def invoke(handler, parameters):
    return {"blob": bytes(i % 256 for i in range(int(parameters.get("size", 4))))}
