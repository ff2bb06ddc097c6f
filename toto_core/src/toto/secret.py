"""The original's import path ``toto.secret``: the module is ``toto.original.secret`` (the seed
surface's subpackage). Importing this one gives that very module, so what is set through
either name (``password_hash``) is one state."""

import sys

from toto.original import secret as _module
from toto.original.secret import *  # noqa: F403  (the names, for readers and type checkers)

sys.modules[__name__] = _module
