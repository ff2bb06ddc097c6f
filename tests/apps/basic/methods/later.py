"""Callback-style method: answers through handler.respond after a delay."""

from tornado.ioloop import IOLoop
from toto.invocation import asynchronous


@asynchronous
def invoke(handler, parameters):
    delay = float(parameters.get("delay", 0.05))
    IOLoop.current().call_later(delay, lambda: handler.respond(result={"later": parameters.get("value")}))
