"""The tables toto-sql keeps (under an optional name prefix) and the schema version they record.

A later release that changes the tables raises ``SCHEMA_VERSION`` and migrates a
database whose recorded version is older, in ``SqlStorage.open``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Double, Index, Integer, LargeBinary, MetaData, String, Table, Text, text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine
from toto.exceptions import PluginError
from toto.storage.checks import MAX_USER_ID

#: The version of the tables below; stored in ``<prefix>schema_version``.
#: 2: ``sessions.version`` (the write count ``save_state`` compares) and the ``guards`` table.
SCHEMA_VERSION = 2
#: The component name of this plugin's row in ``<prefix>schema_version``.
COMPONENT = "toto-sql"
#: The longest session id the core accepts (``toto.sessions``) and the longest signing key stored.
MAX_SESSION_ID = 128
MAX_KEY = 128
#: The longest key of a counter or "seen once" mark (``Storage.increment``).
MAX_GUARD_KEY = 200

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,29}\Z")


def _exact(length: int) -> TypeEngine[str]:
    """A string compared byte for byte: MySQL's default collations ignore case and accents,
    which would make ``Zoë`` and ``zoe`` the same user."""
    variant = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return String(length).with_variant(variant, "mysql", "mariadb")


def _long_text() -> TypeEngine[str]:
    variant = mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin")
    return Text().with_variant(variant, "mysql", "mariadb")


def _long_binary() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def check_prefix(prefix: str) -> str:
    if prefix and not _PREFIX.match(prefix):
        raise PluginError(
            f"sql_table_prefix {prefix!r} must be letters, digits and _ (not starting with a digit, "
            "at most 30 characters)"
        )
    return prefix


@dataclass
class Tables:
    """The metadata and tables of one prefix."""

    metadata: MetaData
    accounts: Table
    sessions: Table
    guards: Table
    schema_version: Table


def make_tables(prefix: str) -> Tables:
    check_prefix(prefix)
    metadata = MetaData()
    accounts = Table(
        f"{prefix}accounts",
        metadata,
        Column("user_id", _exact(MAX_USER_ID), primary_key=True),
        Column("password_hash", Text(), nullable=False),
        Column("fields", _long_text(), nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    sessions = Table(
        f"{prefix}sessions",
        metadata,
        Column("session_id", _exact(MAX_SESSION_ID), primary_key=True),
        Column("user_id", _exact(MAX_USER_ID), nullable=True),
        Column("expires", Double(), nullable=False),
        Column("state", _long_binary(), nullable=False),
        Column("signing_key", String(MAX_KEY), nullable=True),
        Column("version", BigInteger(), nullable=False, server_default=text("0")),
        # Per-user deletion (password change, logout everywhere) and the expiry purge.
        Index(f"{prefix}sessions_user_id", "user_id"),
        Index(f"{prefix}sessions_expires", "expires"),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    guards = Table(
        f"{prefix}guards",
        metadata,
        Column("guard_key", _exact(MAX_GUARD_KEY), primary_key=True),
        Column("value", BigInteger(), nullable=False),
        Column("expires", Double(), nullable=False),
        Index(f"{prefix}guards_expires", "expires"),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    schema_version = Table(
        f"{prefix}schema_version",
        metadata,
        Column("component", String(64), primary_key=True),
        Column("version", Integer(), nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    return Tables(metadata, accounts, sessions, guards, schema_version)
