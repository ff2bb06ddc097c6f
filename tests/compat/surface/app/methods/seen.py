"""Whether a module is imported in this server process (for the lookup tests)."""

import sys


def invoke(handler, params):
    return {name: name in sys.modules for name in params["modules"]}
