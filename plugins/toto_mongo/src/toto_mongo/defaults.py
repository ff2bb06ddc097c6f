"""Defaults the plugin's options show; kept apart so ``--help`` never imports pymongo's client."""

DEFAULT_URL = "mongodb://127.0.0.1:27017/toto"
DEFAULT_DATABASE = "toto"
DEFAULT_PREFIX = "toto_"
DEFAULT_TIMEOUT = 2.0
