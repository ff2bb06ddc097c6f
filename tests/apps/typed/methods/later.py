"""Answers through handler.respond (callback style), with a typed parameter."""

from dataclasses import dataclass

from tornado.ioloop import IOLoop
from toto.invocation import asynchronous


@dataclass
class Later:
    text: str


@asynchronous
def invoke(handler, parameters: Later) -> str:
    IOLoop.current().add_callback(handler.respond, result=parameters.text.upper())
