"""Finding plugins (entry-point group ``toto``) and merging what they register."""

from __future__ import annotations

import logging
import os
from typing import Any

import pluggy

from toto import hookspecs
from toto.exceptions import PluginError

log = logging.getLogger("toto.plugins")

#: Which distribution offers the well-known backend names, for "pip install" hints.
KNOWN_PROVIDERS = {
    "sqlite": "toto-sql[sqlite]",
    "postgres": "toto-sql[postgres]",
    "postgresql": "toto-sql[postgres]",
    "mysql": "toto-sql[mysql]",
    "mariadb": "toto-sql[mysql]",
    "redis": "toto-redis",
    "mongodb": "toto-mongo",
    "mongo": "toto-mongo",
    "msgpack": "toto-msgpack",
    "bson": "toto-mongo",
    "application/msgpack": "toto-msgpack",
    "application/x-msgpack": "toto-msgpack",
    "application/bson": "toto-mongo",
}

#: Comma-separated plugin names: load only these entry points (the built-ins always load).
ENV_ONLY = "TOTO_PLUGINS"
#: Set to 1 to log every hook call with its arguments and results.
ENV_TRACE = "TOTO_TRACE_HOOKS"


def install_hint(name: str) -> str:
    dist = KNOWN_PROVIDERS.get(name)
    if dist:
        return f"pip install '{dist}'"
    return f"install the plugin that provides {name!r}"


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the built-ins and every installed ``toto`` entry point."""
    from toto import builtins

    pm = pluggy.PluginManager("toto")
    pm.add_hookspecs(hookspecs)
    pm.register(builtins, name="toto.builtins")
    if load_entry_points:
        only = os.environ.get(ENV_ONLY)
        if only is not None:
            wanted = {n.strip() for n in only.split(",") if n.strip()}
            from importlib.metadata import entry_points

            for ep in entry_points(group="toto"):
                if ep.name in wanted and pm.get_plugin(ep.name) is None:
                    pm.register(ep.load(), name=ep.name)
        else:
            pm.load_setuptools_entrypoints("toto")
    if os.environ.get(ENV_TRACE):
        pm.trace.root.setwriter(lambda msg: log.info("hook: %s", msg.rstrip()))
        pm.enable_tracing()
    return pm


def plugin_label(pm: pluggy.PluginManager, plugin: object) -> str:
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return f"{dist.project_name} {dist.version}"
    return pm.get_name(plugin) or repr(plugin)


def merge_named(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Any]:
    """Merge ``{name: thing}`` answers of one registration hook; a name offered twice is an error."""
    hook = getattr(pm.hook, hook_name)
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in reversed(hook.get_hookimpls()):
        offered = impl.function() or {}
        label = plugin_label(pm, impl.plugin)
        for name, value in offered.items():
            if name in merged:
                raise PluginError(
                    f"{hook_name}: {name!r} is offered by both {owners[name]} and {label}; "
                    f"uninstall one, or limit the loaded plugins with {ENV_ONLY}"
                )
            merged[name] = value
            owners[name] = label
    return merged


def merge_serializers(pm: pluggy.PluginManager) -> dict[str, Any]:
    """Content type -> serializer, across plugins; a content type offered twice is an error."""
    by_type: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in reversed(pm.hook.toto_register_serializers.get_hookimpls()):
        label = plugin_label(pm, impl.plugin)
        offered: list[Any] = impl.function() or []  # type: ignore[assignment]
        for serializer in offered:
            for content_type in serializer.content_types:
                if content_type in by_type:
                    raise PluginError(
                        f"serializer for {content_type!r} is offered by both {owners[content_type]} and {label}"
                    )
                by_type[content_type] = serializer
                owners[content_type] = label
    return by_type


def merge_routes(pm: pluggy.PluginManager, server: Any) -> dict[str, Any]:
    """Path -> ``toto.http.Route`` across plugins; a path offered twice is an error."""
    routes: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in reversed(pm.hook.toto_register_routes.get_hookimpls()):
        label = plugin_label(pm, impl.plugin)
        offered: list[Any] = impl.function(server=server) or []  # type: ignore[assignment]
        for route in offered:
            if route.path in routes:
                raise PluginError(f"route /{route.path} is offered by both {owners[route.path]} and {label}")
            routes[route.path] = route
            owners[route.path] = label
    return routes


def default_storage(pm: pluggy.PluginManager, storages: dict[str, Any]) -> str:
    """The storage plugins name for a server given no ``database``: ``memory`` when none does."""
    named: dict[str, str] = {}
    for impl in pm.hook.toto_default_storage.get_hookimpls():
        name = impl.function()
        if name:
            named.setdefault(str(name), plugin_label(pm, impl.plugin))
    if len(named) > 1:
        offers = ", ".join(f"{name!r} ({label})" for name, label in sorted(named.items()))
        raise PluginError(f"several plugins offer a default database: {offers}; choose one with --database")
    if not named:
        return "memory"
    name = next(iter(named))
    if name not in storages:
        raise PluginError(f"the default database {name!r} of {named[name]} is not a registered storage")
    return name


def pick(registry: dict[str, Any], name: str, what: str) -> Any:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise PluginError(f"{what} {name!r} is not installed (installed: {known}); {install_hint(name)}") from None
