"""Defaults the plugin's options show; kept apart so ``--help`` never imports redis-py."""

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "toto:"
DEFAULT_TIMEOUT = 2.0
#: Seconds a write waits for ``redis_wait_replicas`` replicas to confirm it (WAIT's timeout).
DEFAULT_WAIT_TIMEOUT = 0.5
#: Broadcasts the event bus keeps in its history stream (``redis_event_history``).
DEFAULT_EVENT_HISTORY = 1000
