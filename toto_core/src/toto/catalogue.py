"""The method catalogue: every method a server serves, with what a client needs to call it.

Built once per serving process when the ``describe`` option is on (and so anew on each
``--reload``). It walks the method package's files and resolves each name through the
server's ``MethodLookup``, so it obeys the same rules as a call: only modules that really
live below ``method_module`` and define ``invoke`` are methods, nothing else is imported.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from toto.exceptions import TotoException
from toto.lookup import Method, MethodLookup

log = logging.getLogger("toto.catalogue")

_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_BUILTIN_ROOT = "toto.methods"
_REF = "#/components/schemas/{name}"


@dataclass
class MethodInfo:
    """What the catalogue knows of one method."""

    name: str
    doc: str
    requires: tuple[str, ...]
    authenticated: bool
    optional_session: bool
    anonymous_session: bool
    #: ``plain`` (answers when it returns), ``async`` (``async def``) or ``callback`` (``@asynchronous``).
    style: str
    parameters_type: Any
    result_type: Any

    @classmethod
    def of(cls, method: Method) -> MethodInfo:
        invoke = method.invoke
        if method.callback_style:
            style = "callback"
        elif method.is_coroutine:
            style = "async"
        else:
            style = "plain"
        return cls(
            name=method.name,
            doc=inspect.cleandoc(method.module.__doc__ or inspect.getdoc(invoke) or ""),
            requires=tuple(getattr(invoke, "required_parameters", ())),
            authenticated=bool(getattr(invoke, "authenticated", False)),
            optional_session=method.optional_session,
            anonymous_session=bool(getattr(invoke, "anonymous_session", False)),
            style=style,
            parameters_type=method.parameters_type,
            result_type=method.result_type,
        )


class Catalogue:
    """The methods of one server by name, their JSON Schemas, and the modules that failed to load."""

    def __init__(self, lookup: MethodLookup) -> None:
        self.methods: dict[str, MethodInfo] = {}
        #: Method names whose module could not be imported or checked, with the reason (logged too).
        self.errors: dict[str, str] = {}
        self._walk(lookup, lookup.root, "")
        if lookup.builtin_prefixes:
            self._walk(lookup, _BUILTIN_ROOT, "", builtin_only=True)
        self.methods = dict(sorted(self.methods.items()))
        #: ``(parameters schema, result schema)`` per method (None: not declared) and shared components.
        self.schemas, self.components = _schemas(self.methods)

    def _walk(self, lookup: MethodLookup, root: str, prefix: str, builtin_only: bool = False) -> None:
        package = _package(root + ("." + prefix.rstrip(".") if prefix else ""))
        if package is None:
            return
        for found in pkgutil.iter_modules(package.__path__):
            if not _PART.match(found.name):
                continue
            name = prefix + found.name
            # From the core's own package only what the lookup serves from it (account.*, toto.*).
            wanted = not builtin_only or name.startswith(lookup.builtin_prefixes)
            if wanted and name not in self.methods:
                try:
                    self.methods[name] = MethodInfo.of(lookup.resolve(name))
                except TotoException:
                    pass  # a module without invoke (helpers), or a name the lookup refuses
                except Exception as exc:
                    self.errors[name] = f"{type(exc).__name__}: {exc}"
                    log.error("method %s cannot be loaded: %s", name, self.errors[name])
            if found.ispkg:
                self._walk(lookup, root, name + ".", builtin_only)

    def describe(self) -> dict[str, Any]:
        """The catalogue as plain data (the answer of ``toto.describe``)."""
        methods = []
        for name, info in self.methods.items():
            parameters, result = self.schemas[name]
            methods.append(
                {
                    "name": name,
                    "doc": info.doc,
                    "requires": list(info.requires),
                    "authenticated": info.authenticated,
                    "optional_session": info.optional_session,
                    "anonymous_session": info.anonymous_session,
                    "style": info.style,
                    "parameters": parameters,
                    "result": result,
                }
            )
        return {"methods": methods, "schemas": self.components, "errors": dict(self.errors)}


def _package(name: str) -> ModuleType | None:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        log.error("method package %s cannot be imported: %s", name, exc)
        return None
    return module if hasattr(module, "__path__") else None


def _schemas(methods: dict[str, MethodInfo]) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    """JSON Schemas of every declared type, shared ones once under ``components``."""
    types = [t for info in methods.values() for t in (info.parameters_type, info.result_type) if t is not None]
    found: dict[int, Any] = {}
    components: dict[str, Any] = {}
    if types:
        try:
            import msgspec
        except ImportError:
            msgspec = None  # type: ignore[assignment]
        if msgspec is not None:
            try:
                refs, components = msgspec.json.schema_components(types, ref_template=_REF)
                found = {id(t): ref for t, ref in zip(types, refs)}
            except (TypeError, ValueError):
                # One type msgspec cannot describe must not hide the others: do them one by one.
                for t in types:
                    try:
                        (ref,), parts = msgspec.json.schema_components([t], ref_template=_REF)
                    except (TypeError, ValueError) as exc:
                        log.warning("no JSON Schema for %r: %s", t, exc)
                        continue
                    found[id(t)] = ref
                    components.update(parts)
    schemas = {
        name: (
            found.get(id(info.parameters_type)) if info.parameters_type is not None else None,
            found.get(id(info.result_type)) if info.result_type is not None else None,
        )
        for name, info in methods.items()
    }
    return schemas, components
