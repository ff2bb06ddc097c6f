"""From ``--database`` and ``--database_url`` to a SQLAlchemy URL with a native asyncio driver.

Users write plain URLs (``sqlite:///toto.db``, ``postgresql://user@host/db``,
``mysql://root@host/db``); this module adds the driver (``+asyncpg``...), checks that
it is installed, and turns every mistake into one line that says what to do.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from toto.exceptions import PluginError
from toto.plugins import install_command

from toto_sql.defaults import STORAGE_NAMES

#: The URL used when ``--database`` is sqlite (or left out) and no ``--database_url`` is given.
DEFAULT_SQLITE_URL = "sqlite:///./toto.db"


@dataclass(frozen=True)
class Family:
    """One kind of database: the URL schemes it answers to and its asyncio drivers, preferred first."""

    name: str
    backend: str
    schemes: tuple[str, ...]
    drivers: tuple[str, ...]
    extra: str
    example: str


FAMILIES = {
    "sqlite": Family("sqlite", "sqlite", ("sqlite",), ("aiosqlite",), "sqlite", "sqlite:///path/to/toto.db"),
    "postgres": Family(
        "postgres",
        "postgresql",
        ("postgresql", "postgres"),
        ("asyncpg", "psycopg"),
        "postgres",
        "postgresql://user@127.0.0.1:5432/db",
    ),
    "mysql": Family("mysql", "mysql", ("mysql", "mariadb"), ("asyncmy",), "mysql", "mysql://root@127.0.0.1:3306/db"),
}


def describe(url: URL | str) -> str:
    """The URL without its password, for logs and error messages."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def driver_installed(driver: str) -> bool:
    try:
        importlib.import_module(driver)
    except ImportError:
        return False
    return True


def resolve(storage_name: str, url_text: str | None) -> tuple[Family, URL]:
    """The family and the driver-qualified URL for ``--database=storage_name``.

    Raises ``PluginError`` for a URL of another database, an unknown or synchronous
    driver, or a driver that is not installed (naming the pip command).
    """
    family = FAMILIES[STORAGE_NAMES[storage_name]]
    if not url_text:
        if family.name != "sqlite":
            raise PluginError(f"database {storage_name!r} needs a URL: --database_url={family.example}")
        url_text = DEFAULT_SQLITE_URL
    try:
        url = make_url(url_text)
    except ArgumentError:
        raise PluginError(f"invalid database_url {url_text!r}; use e.g. {family.example}") from None
    scheme, _, driver = url.drivername.partition("+")
    if scheme not in family.schemes:
        other = next((f for f in FAMILIES.values() if scheme in f.schemes), None)
        hint = f"; for that URL use --database={other.name}" if other else ""
        raise PluginError(
            f"database {storage_name!r} needs a {family.backend} URL such as {family.example}, "
            f"got database_url={describe(url)}{hint}"
        )
    if driver:
        if driver not in family.drivers:
            raise PluginError(
                f"database_url driver {driver!r} is not an asyncio driver toto-sql supports for {family.name} "
                f"(choose one of: {', '.join(family.drivers)})"
            )
        if not driver_installed(driver):
            raise PluginError(f"database_url names the {driver} driver, which is not installed: pip install {driver}")
    else:
        driver = next((d for d in family.drivers if driver_installed(d)), "")
        if not driver:
            raise PluginError(
                f"database {storage_name!r} needs the {family.drivers[0]} driver, which is not installed: "
                f"{install_command(f'toto-sql[{family.extra}]')}"
            )
    url = url.set(drivername=f"{family.backend}+{driver}")
    if family.name == "mysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return family, url
