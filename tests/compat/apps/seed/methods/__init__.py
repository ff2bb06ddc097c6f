"""An app in the original Toto's template style: sync methods, ``from toto.invocation import *``,
session state through the dict proxy, accounts through ``handler.db_connection``."""
