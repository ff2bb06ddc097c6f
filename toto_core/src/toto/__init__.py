"""Toto: a small, fast server for the JSON-RPC-style APIs behind web and mobile apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from toto.exceptions import TotoException
from toto.original import gencompat as _gencompat

_gencompat.install()  # tornado.gen.Task for method code written for Tornado 4 (toto.original.gencompat)

__version__ = "0.1.0"

#: Decorator for plugin hook implementations: ``@toto.hookimpl def toto_register_storage(): ...``
hookimpl = pluggy.HookimplMarker("toto")

if TYPE_CHECKING:
    from toto.server import TotoServer


def __getattr__(name: str) -> Any:
    # Importing the server pulls in Tornado's web stack; plugins that only need
    # ``hookimpl`` or the storage base should not pay for it.
    if name == "TotoServer":
        from toto.server import TotoServer

        return TotoServer
    raise AttributeError(name)


__all__ = ["TotoException", "TotoServer", "__version__", "hookimpl"]
