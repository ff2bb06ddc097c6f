"""Writes raw bytes with its own content type."""


def invoke(handler, parameters):
    handler.respond_raw(b"plain text answer", "text/plain")
