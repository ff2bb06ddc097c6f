"""A method package written the way the original's templates wrote theirs: built-in methods
re-exported under names of its own, its own modules imported here."""

import email  # a package whose submodules are not imported: callers must not reach them

import toto.methods.client_error as client_error
from toto.methods.account import create as account_create

from . import account, chat, config, download, feed, greet, link, members, pages, seen, startup_info, tasks_demo, visits
