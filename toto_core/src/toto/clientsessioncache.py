"""The original's import path ``toto.clientsessioncache``: the module is ``toto.original.clientsessioncache`` (the seed
surface's subpackage). Importing this one gives that very module, so what is set through
either name (``ClientCache``) is one state."""

import sys

from toto.original import clientsessioncache as _module
from toto.original.clientsessioncache import *  # noqa: F403  (the names, for readers and type checkers)

sys.modules[__name__] = _module
