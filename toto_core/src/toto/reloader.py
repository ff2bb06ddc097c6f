"""``--reload``: serve in a child process and start a new one when the code or the config changes.

The parent only watches (watchfiles, the file watcher uvicorn uses: native change
notification, no polling) the method package and the config file; each child is an
ordinary server made from the same config file, command line and keyword options as the
parent, so a reload reads the changed config and re-imports every method. A child that
fails to start (a syntax error being typed) is simply replaced on the next change. For
development only: the children are plain foreground servers (no ``--processes``,
``--start``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from toto.console import exit_with_error, setup_logging

if TYPE_CHECKING:
    from toto.server import TotoServer

log = logging.getLogger("toto.reloader")

#: Environment variable that hands the child how to make its server (JSON).
ENV_CHILD = "TOTO_RELOAD_CHILD"
_SOURCE_SUFFIXES = (".py", ".pyi", ".json", ".conf", ".toml", ".cfg")


def watched_paths(server: TotoServer) -> tuple[list[str], str | None]:
    """The method package's directories, and the config file (absolute) when there is one."""
    spec = importlib.util.find_spec(server.options.method_module)
    directories = list(spec.submodule_search_locations or []) if spec is not None else []
    conf = server.given["conf_file"]
    return [os.path.abspath(d) for d in directories], os.path.abspath(conf) if conf else None


def run_reloading(server: TotoServer) -> None:
    """Serve ``server``'s configuration in a child, restarted on every change, until SIGINT or SIGTERM."""
    o = server.options
    if o.start or o.stop or o.restart or int(o.processes) != 1:
        exit_with_error("--reload serves one process in the foreground: drop --start/--stop/--restart/--processes")
    try:
        import watchfiles  # optional: the toto-core[dev] extra
    except ImportError:
        exit_with_error("--reload needs watchfiles: pip install watchfiles (the toto-core[dev] extra)")
    setup_logging(o.logging, o.log_format)
    directories, conf = watched_paths(server)
    paths = [*directories, *([os.path.dirname(conf)] if conf else [])]

    def source_changed(change: Any, path: str) -> bool:
        if path == conf:
            return True
        if "__pycache__" in path or not path.endswith(_SOURCE_SUFFIXES):
            return False
        return any(path.startswith(d + os.sep) for d in directories)

    given = server.given
    os.environ[ENV_CHILD] = json.dumps(
        {
            "conf_file": given["conf_file"],
            "argv": [*given["argv"], "--reload=false", "--autoreload=false"],  # autoreload: the original's name
            "options": given["options"],
            "sys_path": sys.path,
            "server_class": server_class(server),
        }
    )
    log.info("reloading on changes to %s", ", ".join([*directories, *([conf] if conf else [])]))

    def changed(changes: set[tuple[Any, str]]) -> None:
        log.info("restarting: %s changed", ", ".join(sorted({os.path.relpath(p) for _, p in changes})))

    watchfiles.run_process(
        *paths,
        target=shlex.join([sys.executable, "-m", "toto.reloader"]),
        target_type="command",
        watch_filter=source_changed,
        callback=changed,
        sigint_timeout=int(float(o.drain_timeout)) + 5,
    )


def server_class(server: TotoServer) -> str:
    """``module:name`` of the server's class, for the child to make one of the same class (a
    subclass of ``TotoServer`` too). A class the child cannot import by name (one defined in
    the script that was run, ``__main__``) gives the ``TotoServer`` it derives from."""
    cls = type(server)
    while cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        cls = cls.__mro__[1]
    return f"{cls.__module__}:{cls.__qualname__}"


def serve_child() -> None:
    """The child's side: make the server exactly as the parent was made, and serve. The class
    is found by name: this module sits below ``toto.server`` and does not import it."""
    given = json.loads(os.environ.pop(ENV_CHILD))
    sys.path[:] = given["sys_path"]
    module, _, name = given["server_class"].partition(":")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    cls(given["conf_file"], argv=given["argv"], **given["options"]).run()


if __name__ == "__main__":
    serve_child()
