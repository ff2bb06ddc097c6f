"""Long poll: answers the args of the next event parameters["name"], or null after parameters["timeout"]."""

from tornado.ioloop import IOLoop
from toto.invocation import asynchronous


@asynchronous
def invoke(handler, parameters):
    name = parameters["name"]
    timeout = float(parameters.get("timeout", 30))
    handler.register_event_handler(name, lambda args: handler.respond(result={"event": name, "args": args}))
    IOLoop.current().call_later(timeout, lambda: handler.respond(result=None))
