"""The hooks toto-sql implements (entry point ``toto``: ``sql = "toto_sql.plugin"``).

Every Toto server loads this module at start-up, so it imports SQLAlchemy and the
drivers only when a server really stores in SQL: a server on another database does not
carry their memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import toto

from toto_sql.defaults import DEFAULT_EVENT_HISTORY, DEFAULT_PREFIX, DEFAULT_TIMEOUT, STORAGE_NAMES

if TYPE_CHECKING:
    from toto_sql.eventbus import PostgresEventBus
    from toto_sql.storage import SqlStorage


def sql_storage(options: Any) -> SqlStorage:
    from toto_sql.storage import SqlStorage

    return SqlStorage.from_options(options)


def postgres_event_bus(options: Any) -> PostgresEventBus:
    from toto_sql.eventbus import PostgresEventBus

    return PostgresEventBus.from_options(options)


@toto.hookimpl
def toto_register_event_buses() -> dict[str, Callable[[Any], PostgresEventBus]]:
    return {"postgres": postgres_event_bus}


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], SqlStorage]]:
    return dict.fromkeys(STORAGE_NAMES, sql_storage)


@toto.hookimpl(trylast=True)
def toto_default_storage() -> str:
    # An embedded database that needs no setup, so a server with toto-sql installed keeps its
    # data; trylast, so that a plugin with a more particular default wins.
    return "sqlite"


@toto.hookimpl
def toto_add_options(options: Any) -> None:
    options.define(
        "sql_table_prefix",
        DEFAULT_PREFIX,
        help="start of the name of every toto-sql table, so several apps can share one database",
        type=str,
    )
    options.define(
        "sql_timeout",
        DEFAULT_TIMEOUT,
        help="seconds to wait for the SQL database (connect, and each statement) before a request fails with 1013",
        type=float,
    )
    options.define(
        "sql_event_history",
        DEFAULT_EVENT_HISTORY,
        help="broadcasts the postgres event bus keeps in its events table, from which a server that lost its "
        "listening connection (or a socket, by position) reads what it missed",
        type=int,
    )
