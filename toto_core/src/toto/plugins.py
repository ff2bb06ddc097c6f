"""Finding plugins (entry-point group ``toto``), checking them, and merging what they register.

Every hook is called through pluggy, registration hooks included (one plugin at a
time where the core must know who offered what), so ``TOTO_TRACE_HOOKS=1`` shows
every call. A plugin that cannot be imported, implements a name that is no hook, or
gets a hook's arguments wrong is kept out and recorded in ``failures``: a server
refuses to start on it, ``toto plugins`` lists it beside the others.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from toto import __version__, builtins, hookspecs
from toto.exceptions import PluginError

# The install hints live in toto.install (below the plugin loader) and keep their names here.
from toto.install import CORE as CORE
from toto.install import KNOWN_PROVIDERS as KNOWN_PROVIDERS
from toto.install import install_command as install_command
from toto.install import install_hint as install_hint

log = logging.getLogger("toto.plugins")
hook_log = logging.getLogger("toto.hooks")

#: Comma-separated plugins to load, by distribution (``toto-redis``) or entry-point name
#: (``redis``); the core's built-ins always load.
ENV_ONLY = "TOTO_PLUGINS"
#: Set to 1 to log every hook call with its arguments and results.
ENV_TRACE = "TOTO_TRACE_HOOKS"
_BUILTINS = "toto.builtins"
_HOOK_NAMES = sorted(name for name in dir(hookspecs) if name.startswith("toto_"))


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them: ``Toto_Redis`` and ``toto-redis`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PluginFailure:
    """A plugin kept out at startup: which one, and why, in one line (and the traceback for --debug)."""

    label: str
    reason: str
    details: str = ""

    def __str__(self) -> str:
        return f"plugin {self.label} {self.reason}"


class TotoPluginManager(pluggy.PluginManager):
    """pluggy's plugin manager with the built-ins, the distribution of each plugin and the
    plugins that failed to load (``failures``)."""

    def __init__(self) -> None:
        super().__init__("toto")
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._labels: dict[int, str] = {}

    def label(self, plugin: object) -> str:
        """``toto-redis 0.1.0``: the distribution and version that brought ``plugin``."""
        return self._labels.get(id(plugin)) or self.get_name(plugin) or repr(plugin)

    def add(self, plugin: object, name: str, label: str) -> bool:
        """Register ``plugin`` after checking that every hook it implements exists; a failure
        is recorded (and the plugin left out), not raised."""
        problem = unknown_hooks(self, plugin)
        if problem is None:
            try:
                self.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                problem = " ".join(str(exc).split())
        if problem is not None:
            self.failures.append(PluginFailure(label, problem))
            return False
        self._labels[id(plugin)] = label
        return True

    def implementers(self, hook_name: str) -> list[object]:
        """The plugins that implement ``hook_name``, in pluggy's call order."""
        return [impl.plugin for impl in reversed(getattr(self.hook, hook_name).get_hookimpls())]

    def answers(self, hook_name: str, **kwargs: Any) -> list[tuple[object, Any]]:
        """Each plugin's answer to ``hook_name`` as ``(plugin, answer)``, in pluggy's call order.

        Each plugin is called through its own pluggy hook caller, so tracing sees every call.
        """
        plugins = self.implementers(hook_name)
        return [(plugin, self.answer(plugin, hook_name, plugins, **kwargs)) for plugin in plugins]

    def answer(
        self, plugin: object, hook_name: str, implementers: Iterable[object] | None = None, **kwargs: Any
    ) -> Any:
        """``plugin``'s answer to ``hook_name`` (None when it does not implement it), through pluggy."""
        others = [p for p in (implementers if implementers is not None else self.get_plugins()) if p is not plugin]
        results = self.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        return results[0] if results else None


def unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """A one-line complaint when ``plugin`` implements a name that is no Toto hook (a typo),
    or defines a hook without ``@toto.hookimpl`` (so it would never be called)."""
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is not None:
            name = opts.get("specname") or attr
            if name not in _HOOK_NAMES:
                close = difflib.get_close_matches(name, _HOOK_NAMES, n=1, cutoff=0.6)
                hint = (
                    f"; did you mean {close[0]}?"
                    if close
                    else f" (the hooks are in toto/hookspecs.py: {', '.join(_HOOK_NAMES)})"
                )
                return f"implements {name}, which is not a Toto hook{hint}"
        elif attr in _HOOK_NAMES and inspect.isfunction(getattr(plugin, attr, None)):
            return f"defines {attr} without @toto.hookimpl, so Toto would never call it"
    return None


def _distribution_label(dist: importlib.metadata.Distribution) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def _entry_points() -> list[tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]]:
    found: dict[str, tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "toto" and ep.name not in found:
                found[ep.name] = (dist, ep)
    return sorted(found.values(), key=lambda pair: canonical_name(pair[0].metadata["Name"] or pair[1].name))


def _selected(
    entry_points: list[tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]], only: str
) -> list[tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]]:
    """The entry points ``TOTO_PLUGINS`` names; a name that is not installed is an error."""
    wanted = [canonical_name(n.strip()) for n in only.split(",") if n.strip()]
    by_name: dict[str, list[tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]]] = {}
    for dist, ep in entry_points:
        by_name.setdefault(canonical_name(dist.metadata["Name"] or ""), []).append((dist, ep))
        by_name.setdefault(canonical_name(ep.name), []).append((dist, ep))
    unknown = [name for name in wanted if name not in by_name and name != CORE]
    if unknown:
        installed = ", ".join(sorted({canonical_name(d.metadata["Name"] or e.name) for d, e in entry_points})) or "none"
        raise PluginError(
            f"{ENV_ONLY} names {', '.join(repr(n) for n in unknown)}, which is not installed "
            f"(installed plugins: {installed}; {CORE} always loads)"
        )
    chosen = {id(ep): (dist, ep) for name in wanted for dist, ep in by_name.get(name, [])}
    return [pair for pair in entry_points if id(pair[1]) in chosen]


def get_plugin_manager(load_entry_points: bool = True) -> TotoPluginManager:
    """A plugin manager with the built-ins and the installed ``toto`` entry points
    (those ``TOTO_PLUGINS`` names, when it is set).

    Raises ``PluginError`` when ``TOTO_PLUGINS`` names a plugin that is not installed;
    a plugin that fails to load is recorded in ``failures``.
    """
    pm = TotoPluginManager()
    pm.add(builtins, _BUILTINS, f"{CORE} {__version__}")
    if load_entry_points:
        entry_points = _entry_points()
        only = os.environ.get(ENV_ONLY)
        if only is not None:
            entry_points = _selected(entry_points, only)
        for dist, ep in entry_points:
            label = _distribution_label(dist)
            try:
                plugin = ep.load()
            except Exception as exc:
                reason = f"failed to import ({ep.name} = {ep.value}): {type(exc).__name__}: {exc}"
                pm.failures.append(PluginFailure(label, " ".join(reason.split()), traceback.format_exc()))
                continue
            pm.add(plugin, ep.name, label)
    if os.environ.get(ENV_TRACE) not in (None, "", "0"):
        trace_hooks(pm)
    return pm


def trace_hooks(pm: TotoPluginManager) -> None:
    """Log every hook call, with who implements it, its arguments and its result (``toto.hooks``)."""
    if not hook_log.handlers:
        # Hooks run before the server configures logging (options, registrations): log them anyway.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        hook_log.addHandler(handler)
        hook_log.propagate = False
    hook_log.setLevel(logging.INFO)

    def before(hook_name: str, impls: Any, kwargs: Any) -> None:
        pass

    def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
        arguments = ", ".join(f"{name}={_short(value)}" for name, value in kwargs.items())
        by = ", ".join(pm.label(impl.plugin) for impl in reversed(impls)) or "no plugin"
        if outcome.exception is not None:
            shown = f"raised {type(outcome.exception).__name__}: {outcome.exception}"
        else:
            shown = f"-> {_short(outcome.get_result())}"
        hook_log.info("%s(%s) [%s] %s", hook_name, arguments, by, shown)

    pm.add_hookcall_monitoring(before, after)


def _short(value: Any, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def report_failures(pm: TotoPluginManager, debug: bool = False) -> None:
    """Raise ``PluginError`` (one line) when a plugin failed to load; print the tracebacks first with ``debug``."""
    if not pm.failures:
        return
    if debug:
        for failure in pm.failures:
            if failure.details:
                print(failure.details, file=sys.stderr, end="")
    raise PluginError("; ".join(str(f) for f in pm.failures) + f" (uninstall it, or leave it out with {ENV_ONLY})")


def merge_named(pm: TotoPluginManager, hook_name: str) -> dict[str, Any]:
    """Merge ``{name: thing}`` answers of one registration hook; a name offered twice is an error."""
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin, offered in pm.answers(hook_name):
        label = pm.label(plugin)
        for name, value in (offered or {}).items():
            if name in merged:
                raise PluginError(
                    f"{hook_name}: {name!r} is offered by both {owners[name]} and {label}; "
                    f"uninstall one, or limit the loaded plugins with {ENV_ONLY}"
                )
            merged[name] = value
            owners[name] = label
    return merged


def merge_serializers(pm: TotoPluginManager) -> dict[str, Any]:
    """Content type -> serializer, across plugins; a content type offered twice is an error."""
    by_type: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin, offered in pm.answers("toto_register_serializers"):
        label = pm.label(plugin)
        for serializer in offered or []:
            for content_type in serializer.content_types:
                if content_type in by_type:
                    raise PluginError(
                        f"serializer for {content_type!r} is offered by both {owners[content_type]} and {label}"
                    )
                by_type[content_type] = serializer
                owners[content_type] = label
    return by_type


def merge_routes(pm: TotoPluginManager, server: Any) -> dict[str, Any]:
    """Path -> ``toto.http.Route`` across plugins; a path offered twice is an error."""
    routes: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin, offered in pm.answers("toto_register_routes", server=server):
        label = pm.label(plugin)
        for route in offered or []:
            if route.path in routes:
                raise PluginError(f"route /{route.path} is offered by both {owners[route.path]} and {label}")
            routes[route.path] = route
            owners[route.path] = label
    return routes


def default_storage(pm: TotoPluginManager, storages: dict[str, Any]) -> str:
    """The storage for a server given no ``database``: the first plugin's answer to
    ``toto_default_storage`` (a firstresult hook), else ``memory``."""
    name = pm.hook.toto_default_storage()
    if not name:
        return "memory"
    if name not in storages:
        raise PluginError(f"toto_default_storage names {name!r}, which is not a registered storage")
    return str(name)


def pick(registry: dict[str, Any], name: str, what: str) -> Any:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise PluginError(f"{what} {name!r} is not installed (installed: {known}); {install_hint(name)}") from None
