"""``tornado.gen.Task``, ``Callback`` and ``Wait`` for method code written for Tornado 4.

Tornado 6 removed them. Toto puts ``Task`` back into ``tornado.gen`` (``install()``, done
when ``toto`` is imported, so before any method module),
so ``from tornado.gen import coroutine, Return, Task`` works and ``yield Task(fn, *args)``
runs ``fn(*args, callback=...)`` and resumes with the value given to the callback, which
may be called from any thread. ``Callback`` and ``Wait`` (keyed callbacks of
``gen.engine``) import, but using one raises a ``TypeError`` saying what to write instead:
a ``Future``, or ``Task``.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Callback", "Task", "Wait", "install"]


def Task(func: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """Call ``func(*args, callback=cb, **kwargs)``; the future resolves with what ``cb`` gets
    (one argument, or None without one; several are a tuple)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def callback(*values: Any) -> None:
        value = values[0] if len(values) == 1 else (values or None)
        loop.call_soon_threadsafe(settle, value)

    try:
        func(*args, callback=callback, **kwargs)
    except Exception as exc:
        future.set_exception(exc)
    return future


class _Removed:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"tornado.gen.{type(self).__name__} was removed from Tornado: create a Future "
            "(asyncio.get_running_loop().create_future()), pass its set_result as the callback "
            "and yield (or await) the Future, or use tornado.gen.Task(fn, *args)"
        )


class Callback(_Removed):
    """Tornado 4's keyed callback: removed (using it raises TypeError with the replacement)."""


class Wait(_Removed):
    """Tornado 4's wait for a keyed callback: removed (using it raises TypeError with the replacement)."""


def _patch(gen: Any) -> None:
    for name, value in (("Task", Task), ("Callback", Callback), ("Wait", Wait)):
        if not hasattr(gen, name):
            setattr(gen, name, value)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``tornado.gen`` right after it is first imported, so that importing ``toto``
    (what every storage plugin does) loads no Tornado of its own."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tornado.gen":
            return None
        sys.meta_path.remove(self)  # once: the next finders find the module itself
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        load = loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Put ``Task``, ``Callback`` and ``Wait`` into ``tornado.gen`` where Tornado lacks them:
    now if it is loaded, else as soon as something imports it."""
    gen = sys.modules.get("tornado.gen")
    if gen is not None:
        _patch(gen)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
