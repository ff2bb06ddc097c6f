"""An application written the 2016 original's way (tests/compat/test_original_suite.py)."""

import logging

from toto.handler import TotoHandler

from . import account, echo, fails, later, profile, read_profile, task_echo, upload, who  # noqa: F401 (the methods)


def _before(handler, transaction_id, method):
    logging.warning("hook before %s %s", method, transaction_id)


def _after(handler, transaction_id):
    logging.warning("hook after %s", transaction_id)


TotoHandler.set_before_handler(_before)
TotoHandler.set_after_handler(_after)
