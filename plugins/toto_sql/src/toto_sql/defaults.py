"""Names and defaults the plugin registers and shows; kept apart so loading the plugin
(which every Toto server does) and ``--help`` never import SQLAlchemy."""

DEFAULT_TIMEOUT = 2.0
DEFAULT_PREFIX = "toto_"

#: ``--database`` names and the family each selects.
STORAGE_NAMES = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
}

#: Broadcasts the ``postgres`` event bus keeps in its events table (``sql_event_history``).
DEFAULT_EVENT_HISTORY = 1000
