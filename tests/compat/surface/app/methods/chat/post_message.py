from toto.events import EventManager
from toto.invocation import *


@requires("message")
def invoke(handler, params):
    EventManager.instance().send("message", params["message"])
    return "message sent!"
