"""Every message the persistent handler of setup_events saw, in order."""

import setup_events
from toto.invocation import *


def invoke(handler, params):
    return {"messages": list(setup_events.LOG)}
