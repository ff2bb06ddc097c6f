"""Safe, cached resolution of method names to method modules."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
from types import ModuleType
from typing import Any

from toto.exceptions import ERROR_INVALID_METHOD, ERROR_MISSING_METHOD, TotoException
from toto.validation import build_validator, declared_types

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\Z")
_BUILTIN_ROOT = "toto.methods"
#: What ``describe`` serves: asked for while it is off, the log says how to turn it on.
_DESCRIBE_ONLY = re.compile(r"(_explorer([./].*)?|openapi\.json|toto\.describe)\Z", re.S)

log = logging.getLogger("toto.lookup")


class Method:
    """A resolved method: its module and how to call it."""

    __slots__ = (
        "authenticated",
        "callback_style",
        "invoke",
        "is_coroutine",
        "jsonp",
        "module",
        "name",
        "on_close",
        "optional_session",
        "parameters_type",
        "plain",
        "result_type",
        "validate",
    )

    def __init__(self, name: str, module: ModuleType) -> None:
        self.name = name
        self.module = module
        self.invoke = module.invoke
        self.is_coroutine = inspect.iscoroutinefunction(self.invoke)
        self.callback_style = bool(getattr(self.invoke, "asynchronous", False))
        self.optional_session = bool(getattr(self.invoke, "optionally_authenticated", False))
        #: The method asks for a signed-in session (@authenticated): only it is refused
        #: (1007, 1008) when the named session is unknown or badly signed.
        self.authenticated = bool(getattr(self.invoke, "authenticated", False)) and not getattr(
            self.invoke, "session_parameter", False
        )
        self.on_close = getattr(module, "on_connection_close", None)
        #: The parameter that names a JSONP callback (``@jsonp``), or None.
        self.jsonp: str | None = getattr(self.invoke, "jsonp_parameter", None)
        #: A plain function: it answers when it returns, so a batch can run it in place.
        self.plain = not self.is_coroutine and not self.callback_style
        # Decided once here, so a method without type hints pays nothing per call (toto.validation).
        self.parameters_type, self.result_type = declared_types(self.invoke, name)
        self.validate = None if self.parameters_type is None else build_validator(self.parameters_type, name)


def _may_reexport(module_name: str, root: str) -> bool:
    """Whether a module's imports may name methods: the method package's and the built-ins'."""
    return any(module_name == base or module_name.startswith(base + ".") for base in (root, _BUILTIN_ROOT))


def invalid(name: Any) -> TotoException:
    shown = name if isinstance(name, str) and len(name) <= 200 else "<invalid>"
    return TotoException(ERROR_INVALID_METHOD, f"Cannot call '{shown}'.")


class MethodLookup:
    """Maps ``a.b.c`` to ``<method_module>.a.b.c`` and nothing else.

    A name is a dotted path of identifiers that start with a letter (so no private
    or dunder names, no ``..``, no absolute imports); it is imported only as a
    submodule of the method package, and the module found must really live there
    and define ``invoke``. Hits are cached; misses are not, so the cache cannot be
    grown by callers.
    """

    def __init__(self, root: str, builtin_accounts: bool = True, describe: bool = False) -> None:
        self.root = root
        self.builtin_accounts = builtin_accounts
        self.describe = describe
        #: Name prefixes the core serves from ``toto.methods`` when the app has no such module.
        self.builtin_prefixes = ("account.",) * builtin_accounts + ("toto.",) * describe
        self._cache: dict[str, Method] = {}
        #: Method modules without ``invoke`` and the describe hint, each logged once (a finite set:
        #: only modules that exist below the method package are added).
        self._explained: set[str] = set()
        try:
            importlib.import_module(root)
        except ImportError as exc:
            raise ImportError(f"method_module {root!r} cannot be imported: {exc}") from exc

    def resolve(self, name: Any) -> Method:
        method = self._cache.get(name) if isinstance(name, str) else None
        if method is not None:
            return method
        if name is None or name == "":
            raise TotoException(ERROR_MISSING_METHOD, "Missing method.")
        if not isinstance(name, str) or len(name) > 200 or not _NAME.match(name):
            self._hint_describe(name)
            raise invalid(name)
        module = self._import(self.root, name)
        if module is None:
            module = self._reexported(name)
        if module is None and name.startswith(self.builtin_prefixes):
            module = self._import(_BUILTIN_ROOT, name)
        if module is None:
            self._hint_describe(name)
            raise invalid(name)
        method = Method(name, module)
        self._cache[name] = method
        return method

    def _reexported(self, name: str) -> ModuleType | None:
        """A method module the method package re-exports under another name, as the
        original's lookup (attribute by attribute) allowed: ``import toto.methods.account.create
        as account_create`` in ``methods/__init__.py`` serves ``account_create``.

        Nothing is imported: each step is an attribute that already holds a module, found on
        a module of the method package (or of ``toto.methods``, the original's built-ins, which
        re-export each other), and the last one must define ``invoke``. So a name can reach
        only what the method package itself chose to import.
        """
        current = sys.modules.get(self.root)
        for part in name.split("."):
            if current is None or not _may_reexport(current.__name__, self.root):
                return None
            found = current.__dict__.get(part)
            current = found if isinstance(found, ModuleType) else None
        if current is None or not callable(getattr(current, "invoke", None)):
            return None
        return current

    def _hint_describe(self, name: Any) -> None:
        if self.describe or not isinstance(name, str) or "describe" in self._explained:
            return
        if _DESCRIBE_ONLY.match(name):
            self._explained.add("describe")
            log.warning(
                "%r was asked for, but the API explorer, openapi.json and toto.describe are off: "
                "start the server with --describe (describe=true in its configuration file) to serve them",
                name[:60],
            )

    def _import(self, root: str, name: str) -> ModuleType | None:
        full = f"{root}.{name}"
        module = sys.modules.get(full)
        if module is None:
            try:
                module = importlib.import_module(full)
            except ModuleNotFoundError as exc:
                # Only "this name is not a module below root" means an invalid method;
                # a method module that fails to import its own dependencies is a bug.
                if exc.name is not None and (full == exc.name or full.startswith(exc.name + ".")):
                    return None
                raise
        if module.__name__ != full:
            return None
        if not callable(getattr(module, "invoke", None)):
            if root == self.root and full not in self._explained:
                self._explained.add(full)
                where = getattr(module, "__file__", None) or full
                log.warning(
                    "%s (%s) defines no invoke(handler, parameters) function, so calls to %r answer 1001",
                    full,
                    where,
                    name,
                )
            return None
        return module
