"""Callback-style method that answers with an error."""

from tornado.ioloop import IOLoop
from toto.exceptions import TotoException
from toto.invocation import asynchronous


@asynchronous
def invoke(handler, parameters):
    IOLoop.current().call_later(0.01, lambda: handler.respond(error=TotoException(4000, "later failure")))
