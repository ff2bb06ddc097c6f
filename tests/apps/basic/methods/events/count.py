"""Answers how many event handlers this server process holds (leak checks)."""

from toto.events import EventManager


def invoke(handler, parameters):
    return {"handlers": EventManager.instance().handler_count(), "pid": __import__("os").getpid()}
