"""The hooks toto-sql implements (entry point ``toto``: ``sql = "toto_sql.plugin"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import toto

from toto_sql.storage import DEFAULT_PREFIX, DEFAULT_TIMEOUT, SqlStorage
from toto_sql.urls import STORAGE_NAMES


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], SqlStorage]]:
    return {name: SqlStorage.from_options for name in STORAGE_NAMES}


@toto.hookimpl
def toto_default_storage() -> str:
    # An embedded database that needs no setup: a server with toto-sql installed keeps its data.
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
