"""The original Toto's options (its ``toto/server.py``, ``service.py``, ``handler.py`` and
``dbconnection.py`` definitions), so its config files and command lines keep working.

Each is either served, mapped onto what replaces it here, or refused with one line naming
what to use instead:

- ``daemon = 'start' | 'stop' | 'restart'`` and ``--nodaemon``: ``--start`` / ``--stop`` /
  ``--restart`` win over ``--nodaemon``, which wins over ``daemon`` (the original's order).
- ``autoreload``: ``--reload``.
- ``database = 'none'``: memory storage; ``db_host``, ``db_port``, ``mysql_*``,
  ``postgres_*``, ``mongodb_database``, ``redis_database``: ``database_url``.
- ``bson_enabled`` / ``msgpack_enabled``: true needs the plugin that serves the type, false
  refuses the type even when the plugin is installed.
- ``event_mode``: events are always on (``on`` and ``off`` change nothing, ``only`` is
  refused); ``event_port`` and ``remote_event_receivers``: ``event_bus`` / ``event_url``.
- ``event_init_module`` (its ``invoke(event_manager)`` runs at startup) and
  ``startup_function`` (``module.function``, called as ``function(db_connection=...,
  application=...)``) are served as they were.
- The ZeroMQ worker options and ``client_side_worker_path``: refused (the worker subsystem
  is outside the seed).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from toto.events import EventManager
from toto.exceptions import PluginError
from toto.install import install_command
from toto.options import OptionError, Options

if TYPE_CHECKING:
    from toto.serializers import Serializer
    from toto.server import TotoServer

log = logging.getLogger("toto.server")

GROUP = "the original Toto's"

_EVENTS = "events always travel on event_bus: machine for one machine's processes, redis (toto-redis) across servers"
_WORKERS = (
    "the original's ZeroMQ worker subsystem is outside the seed; "
    "run background work with toto.tasks.TaskQueue or a job queue (Celery, RQ)"
)

#: Original options that are refused, with what replaces each.
REFUSED = {
    "event_port": f"{_EVENTS} (event_url names it); no port to give",
    "remote_event_receivers": f"{_EVENTS}: give every server event_bus = 'redis' and the same event_url",
    "mysql_uuid_account_id": "accounts are keyed by their user_id (no account_id column); remove it",
    "postgres_min_connections": "toto-sql sizes its connection pool itself; remove it",
    "postgres_max_connections": "toto-sql sizes its connection pool itself; remove it",
    "client_side_worker_path": _WORKERS,
    "worker_bind_address": _WORKERS,
    "worker_socket_address": _WORKERS,
    "control_socket_address": _WORKERS,
    "command": _WORKERS,
    "compression_module": _WORKERS,
    "serialization_module": _WORKERS,
    "worker_compression_module": _WORKERS,
    "worker_serialization_module": _WORKERS,
    "worker_serialization_mime": _WORKERS,
    "worker_timeout": _WORKERS,
    "worker_auto_retry": _WORKERS,
    "worker_retry_count": _WORKERS,
    "worker_address": _WORKERS,
    "worker_transport": _WORKERS,
}

#: Options of earlier versions of the original that the original itself retired before 2016:
#: its own templates still name some (remote_instances in the chat template). Ignored with a warning.
RETIRED = {
    "remote_instances": "events travel on event_bus (the original replaced it by remote_event_receivers)",
    "mongodb_host": "the original replaced it by db_host",
    "mongodb_port": "the original replaced it by db_port",
    "mysql_host": "the original replaced it by db_host",
    "password_salt": "passwords are hashed with a salt of their own each (toto.secret)",
    "event_key": "events travel on event_bus",
    "event_path": "events travel on event_bus",
    "event_handler_path": "events travel on event_bus",
    "balancer_monitor_address": "the worker subsystem is outside the seed",
    "remote_worker_path": "the worker subsystem is outside the seed",
    "use_remote_workers": "the worker subsystem is outside the seed",
    "worker_retry_ms": "the worker subsystem is outside the seed",
    "worker_timeout_ms": "the worker subsystem is outside the seed",
}

#: The original's database names, as ``(our database, URL scheme, its name option, its user option,
#: its password option)``.
_DATABASES = {
    "mysql": ("mysql", "mysql", "mysql_database", "mysql_user", "mysql_password"),
    "postgres": ("postgres", "postgresql", "postgres_database", "postgres_user", "postgres_password"),
    "mongodb": ("mongodb", "mongodb", "mongodb_database", None, None),
    "redis": ("redis", "redis", "redis_database", None, None),
}
_DATABASE_OPTIONS = ("db_host", "db_port", *(n for d in _DATABASES.values() for n in d[2:] if n))

#: Content types each ``*_enabled`` switch stands for, and the plugin that serves them.
_SWITCHES = {
    "bson_enabled": (("application/bson",), "toto-mongo"),
    "msgpack_enabled": (("application/msgpack", "application/x-msgpack"), "toto-msgpack"),
}


def _event_mode(value: Any) -> str:
    mode = str(value).strip().lower()
    if mode == "only":
        raise ValueError(f"an event-only server is not needed: {_EVENTS}")
    if mode not in ("on", "off"):
        raise ValueError("choose on or off (events are always available here)")
    return mode


def _daemon(value: Any) -> str:
    wanted = str(value or "").strip().lower()
    if wanted not in ("", "start", "stop", "restart"):
        raise ValueError("choose start | stop | restart")
    return wanted


def define_seed_options(options: Options) -> None:
    """Define the original's options (shown by ``--help`` under their own heading), and map
    them onto ours once every source of options was read (``apply_seed_options``). The core's
    plugin calls this from ``toto_add_options`` (``toto.builtins``)."""
    d = options.define
    d("daemon", "", _daemon, "start, stop or restart in the background (config files; see --start)", group=GROUP)
    d("nodaemon", False, bool, "serve in the foreground, whatever daemon says", group=GROUP)
    d("autoreload", False, bool, "the same as --reload", group=GROUP)
    d("db_host", None, str, "database host, becomes database_url (with db_port and <database>_*)", group=GROUP)
    d("db_port", None, int, "database port, becomes database_url (0: the database's usual port)", group=GROUP)
    for name, what in (
        ("mysql_database", "MySQL schema"),
        ("mysql_user", "MySQL user"),
        ("mysql_password", "MySQL password"),
        ("postgres_database", "PostgreSQL database"),
        ("postgres_user", "PostgreSQL user"),
        ("postgres_password", "PostgreSQL password"),
        ("mongodb_database", "MongoDB database"),
    ):
        d(name, None, str, f"{what}, becomes database_url", group=GROUP)
    d("redis_database", None, int, "Redis database number, becomes database_url", group=GROUP)
    d("bson_enabled", None, bool, "true: serve application/bson (needs toto-mongo); false: refuse it", group=GROUP)
    d(
        "msgpack_enabled",
        None,
        bool,
        "true: serve application/msgpack (needs toto-msgpack); false: refuse it",
        group=GROUP,
    )
    d("event_mode", "on", _event_mode, "events are always on here: on and off change nothing", group=GROUP)
    d(
        "event_init_module",
        "",
        str,
        "module whose invoke(event_manager) runs at startup, e.g. to register persistent event handlers",
        group=GROUP,
    )
    d(
        "startup_function",
        "",
        str,
        "module.function called at startup, before the server listens, as "
        "function(db_connection=<handler.connection>, application=<the request callback>)",
        group=GROUP,
    )
    for name, replacement in REFUSED.items():
        options.refuse(name, replacement, group=GROUP)
    for name, note in RETIRED.items():
        options.retire(name, note, group=GROUP)
    options.after_reading(apply_seed_options)


def apply_seed_options(options: Options) -> None:
    """Map the original's options onto ours, once every source of options was read."""
    o = options
    if not (o.start or o.stop or o.restart) and not o.nodaemon and o.daemon:
        o.set(o.daemon, True)
    if o.nodaemon and not (o.start or o.stop or o.restart):
        o.set("start", False)
    if o.autoreload:
        o.set("reload", True)
    if int(o.port) == 0 and (int(o.processes) != 1 or o.start or o.restart):
        raise OptionError("--port=0 (any free port) serves one process in the foreground only; give a port")
    _map_database(o)


def _map_database(o: Options) -> None:
    database = str(o.database or "")
    if database == "none":
        o.set("database", "memory")
        log.info("database 'none' (the original's): sessions and accounts are kept in memory")
    elif database == "json":
        if o.db_host:
            raise OptionError(
                "database 'json' (the original's JSON file) is not served: "
                "use database = 'sqlite' (one file: database_url = 'sqlite:///toto.db')"
            )
        # No file (db_host=''): the original kept it in memory, as ours does.
        o.set("database", "memory")
        log.info("database 'json' without a file (the original's): sessions and accounts are kept in memory")
    if o.get("db_host") == "" and o.database == "memory":
        o.set("db_host", None)  # the original's way of saying "no file"
    _ignore_other_databases(o, database)
    given = [name for name in _DATABASE_OPTIONS if o.get(name) is not None]
    if not given:
        return
    if o.database_url:
        raise OptionError(f"give database_url or the original's {', '.join(given)}, not both")
    spec = _DATABASES.get(database)
    if spec is None:
        raise OptionError(
            f"{', '.join(given)} need database = 'mysql', 'postgres', 'mongodb' or 'redis' "
            f"(database is {database or 'not set'}); or give database_url"
        )
    ours, scheme, name_option, user_option, password_option = spec
    host = o.db_host or "localhost"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    netloc = host + (f":{int(o.db_port)}" if o.db_port else "")
    user = o.get(user_option) if user_option else None
    if user:
        password = o.get(password_option) if password_option else None
        credentials = quote(str(user), safe="") + (":" + quote(str(password), safe="") if password else "")
        netloc = credentials + "@" + netloc
    name = o.get(name_option)
    if name is None and ours == "mongodb":
        name = "toto_server"  # the original's default
    path = "" if name is None else "/" + quote(str(name), safe="")
    o.set("database_url", f"{scheme}://{netloc}{path}")


def _ignore_other_databases(o: Options, database: str) -> None:
    """A template names the options of its database; run with another one (``--database=memory``
    over a file that says mongodb), they are the original's names for a database not in use:
    warned about once each and ignored, as the original ignored them."""
    chosen = _DATABASES.get(database)
    own = {n for n in chosen[2:] if n} if chosen else set()
    for spec in _DATABASES.values():
        for name in spec[2:]:
            if name and name not in own and o.get(name) is not None:
                o.warn_once(name, f"option {name} is for another database than {database or 'the one chosen'}: ignored")
                o.set(name, None)


def apply_serializer_switches(options: Options, serializers: MutableMapping[str, Serializer]) -> None:
    """``bson_enabled`` / ``msgpack_enabled``: true needs the plugin, false removes its types."""
    for option, (types, plugin) in _SWITCHES.items():
        enabled = options.get(option)
        if enabled is None:
            continue
        if enabled and not any(t in serializers for t in types):
            raise OptionError(f"--{option} needs the {plugin} plugin: {install_command(plugin)}")
        if not enabled:
            for content_type in types:
                serializers.pop(content_type, None)


def _load(path: str, option: str) -> Any:
    try:
        return importlib.import_module(path)
    except Exception as exc:
        raise PluginError(f"--{option}: cannot import {path!r}: {type(exc).__name__}: {exc}") from None


async def run_seed_startup(server: TotoServer, application: Any) -> None:
    """``event_init_module`` then ``startup_function``, as the original called them, before
    the server listens; ``application`` is the request callback that will serve."""
    o = server.options
    if o.event_init_module:
        module = _load(o.event_init_module, "event_init_module")
        setup = getattr(module, "invoke", None)
        if not callable(setup):
            raise PluginError(f"--event_init_module: {o.event_init_module} has no invoke(event_manager) function")
        result = setup(EventManager.instance())
        if inspect.isawaitable(result):
            await result
    if o.startup_function:
        module_name, _, function_name = str(o.startup_function).rpartition(".")
        if not module_name:
            raise PluginError(f"--startup_function: {o.startup_function!r} must be module.function")
        function = getattr(_load(module_name, "startup_function"), function_name, None)
        if not callable(function):
            raise PluginError(f"--startup_function: {module_name} has no function {function_name!r}")
        result = function(db_connection=server.connection, application=application)
        if inspect.isawaitable(result):
            await result
