from threading import Thread

from toto.invocation import *


@asynchronous
def invoke(handler, parameters):
    Thread(target=lambda: handler.respond({"got": parameters})).start()
