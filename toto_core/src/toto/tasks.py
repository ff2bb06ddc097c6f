"""The original's import path ``toto.tasks``: the module is ``toto.original.tasks`` (the seed
surface's subpackage). Importing this one gives that very module, so what is set through
either name (``TaskQueue.instance(...)``) is one state."""

import sys

from toto.original import tasks as _module
from toto.original.tasks import *  # noqa: F403  (the names, for readers and type checkers)

sys.modules[__name__] = _module
