"""The original's import path ``toto.dbconnection``: the module is ``toto.original.dbconnection`` (the seed
surface's subpackage). Importing this one gives that very module, so what is set through
either name (``DBConnection``) is one state."""

import sys

from toto.original import dbconnection as _module
from toto.original.dbconnection import *  # noqa: F403  (the names, for readers and type checkers)

sys.modules[__name__] = _module
