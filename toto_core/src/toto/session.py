"""The original's import path ``toto.session``: the module is ``toto.original.session`` (the seed
surface's subpackage). Importing this one gives that very module, so what is set through
either name (``TotoSession.set_serializer(...)``) is one state."""

import sys

from toto.original import session as _module
from toto.original.session import *  # noqa: F403  (the names, for readers and type checkers)

sys.modules[__name__] = _module
