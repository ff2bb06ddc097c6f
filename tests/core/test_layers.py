"""Low layers import nothing above them (ARCHITECTURE.md "One call pipeline"): the options,
the exceptions, the interfaces and the contract kit load no Tornado and no transport, so a
storage plugin that imports ``toto.options`` carries none of it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import toto

LOW = (
    "toto.options",
    "toto.exceptions",
    "toto.auth",
    "toto.context",
    "toto.hookspecs",
    "toto.http",
    "toto.serializers",
    "toto.storage",
    "toto.eventbus",
    "toto.testing",
)
ABOVE = ("tornado", "toto.transports", "toto.handler", "toto.websocket", "toto.server", "toto.pipeline")


@pytest.mark.parametrize("module", LOW)
def test_a_low_layer_loads_no_tornado_and_no_transport(module: str) -> None:
    script = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert module in loaded, "the probe imported what it names"
    above = [name for name in loaded if name.split(".")[0] == "tornado" or name.startswith(ABOVE)]
    assert above == [], f"import {module} loads {above}"


# -- the import graph -------------------------------------------------------------------------
# Read from the source (AST), not from a running interpreter: every ``import`` counts, at module
# level and inside functions alike, except those under ``if TYPE_CHECKING:`` (annotations only,
# never run). A module is named by its dotted path; an import of another distribution by its
# top-level package.

#: Imports inside a function that are there on purpose, each with its reason. Any other import
#: goes at the top of its module, where a reader sees what the module stands on.
DELIBERATE_INNER = {
    ("toto", "toto.server"): "the package's lazy TotoServer: `import toto` (hookimpl) loads no web stack",
    ("toto.cli", "toto.server"): "the serving stack loads for `toto serve` only; new, plugins, call start without it",
    ("toto.builtins", "toto.transports.tornado"): "a transport loads its HTTP server when --http chooses it",
    ("toto.builtins", "toto.transports.rsgi"): "a transport loads its HTTP server (granian) when chosen",
    ("toto.builtins", "toto.transports.asgi"): "a transport loads its HTTP server (uvicorn) when chosen",
    ("toto.handler", "toto.websocket"): "the socket face loads for a server with use_web_sockets only",
    ("toto.client", "toto.socketclient"): "Tornado's WebSocket client loads when a socket is opened",
    ("toto.client", "tornado"): "Tornado's HTTP client is the async client's; TotoClient and toto call load none",
    ("toto.supervisor", "tornado"): "toto serve --stop (which imports the daemon) loads no Tornado",
    ("toto.testing.client", "toto.asgi"): "the contract kit is a low layer: the server loads when a test serves",
    ("toto.testing.client", "tornado"): "the contract kit is a low layer: Tornado loads when a test serves",
    ("toto.testing.deployment", "tornado"): "the contract kit is a low layer: Tornado loads when a test serves",
    # Optional dependencies: each import fails with what to install, or the feature is skipped.
    ("toto.server", "uvloop"): "optional: event_loop=auto uses it when installed",
    ("toto.reloader", "watchfiles"): "optional: --reload only (the toto-core[dev] extra)",
    ("toto.catalogue", "msgspec"): "optional: schemas of typed methods only",
    ("toto.validation", "msgspec"): "optional: typed parameters only (the toto-core[types] extra)",
    (
        "toto.original.clientsessioncache",
        "cryptography",
    ): "optional: the original's ClientCache only (the clientcache extra)",
    ("toto.transports.rsgi", "granian"): "optional: --http=granian only (the toto-core[granian] extra)",
    ("toto.transports.asgi", "uvicorn"): "optional: --http=uvicorn only (the toto-core[uvicorn] extra)",
    ("toto.testing.contract", "pytest"): "optional: the contract kit's skips, for a test runner that has pytest",
    ("toto.testing.guards", "pytest"): "optional: the contract kit's skips, for a test runner that has pytest",
    ("toto.testing.transport", "psutil"): "optional: the transport contract's file-descriptor count",
}

#: Edges the cycle check leaves out: the one cycle that is there on purpose.
LAZY_EDGES = {
    ("toto", "toto.server"): "`toto.TotoServer` is the server, imported when first asked for (PEP 562)",
}


def toto_modules() -> dict[str, Path]:
    root = Path(toto.__file__).parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([base] if base else [])])
        # `from toto import builtins` imports the module toto.builtins; `from toto import hookimpl` imports toto.
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    targets = set()
    for name in names:
        if name.split(".")[0] != "toto":
            targets.add(name.split(".")[0])
            continue
        while name not in modules:
            name = name.rpartition(".")[0]
        targets.add(name)
    targets.discard(module)
    return targets


def _imports_in(module: str, path: Path, modules: dict[str, Path], typing: bool = False) -> list[tuple[str, bool, int]]:
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, inner: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                children = [*child.body, *child.orelse] if typing else child.orelse
            else:
                children = [child]
            for one in children:
                if isinstance(one, (ast.Import, ast.ImportFrom)):
                    found.extend((t, inner, one.lineno) for t in _targets(module, path, one, modules))
                else:
                    visit(one, inner or isinstance(one, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def import_graph(typing: bool = False) -> dict[str, list[tuple[str, bool, int]]]:
    """Each module of ``toto``: what it imports, as ``(target, inside a function, line)``; with
    ``typing``, the imports for type checkers too."""
    modules = toto_modules()
    return {module: _imports_in(module, path, modules, typing) for module, path in modules.items()}


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return cycles


def test_the_import_graph_sees_what_it_must() -> None:
    """The reader of the source finds the imports the checks below rest on."""
    graph = import_graph()
    assert any(t == "toto.server" and inner for t, inner, _ in graph["toto"]), "imports inside functions count"
    assert any(t == "toto.options" and not inner for t, inner, _ in graph["toto.server"])
    assert not any(t == "toto.server" for t, _, _ in graph["toto.hookspecs"]), "TYPE_CHECKING imports do not count"
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    """Layers point down: cli on top; server, daemon, supervisor, reloader below it; options,
    exceptions and the interfaces low; the client and the socket client one way. Imports
    inside functions count: moving an import into a function hides a cycle, it does not
    remove it."""
    edges: dict[str, set[str]] = {}
    for module, imports in import_graph().items():
        edges[module] = {t for t, _, _ in imports if t.startswith("toto") and (module, t) not in LAZY_EDGES}
    assert import_cycles(edges) == []


def test_imports_inside_functions_are_only_the_deliberate_ones() -> None:
    found: dict[tuple[str, str], list[int]] = {}
    for module, imports in import_graph().items():
        for target, inner, line in imports:
            if inner:
                found.setdefault((module, target), []).append(line)
    unexpected = {f"{m} line {at[0]} imports {t}" for (m, t), at in found.items() if (m, t) not in DELIBERATE_INNER}
    assert sorted(unexpected) == [], "move these imports to the top of their module, or list them with a reason"
    stale = sorted(set(DELIBERATE_INNER) - set(found))
    assert stale == [], "these deliberate imports are gone: take them off DELIBERATE_INNER"


# -- the seed surface (toto.original) ----------------------------------------------------------

#: The request path: it reaches the seed surface through ``toto.original.seed`` alone (the class
#: ``TotoHandler`` inherits, and the ``DBConnection`` of ``handler.db_connection``).
REQUEST_PATH = ("toto.handler", "toto.websocket", "toto.pipeline", "toto.calls", "toto.context", "toto.transports")
SEAM = "toto.original.seed"
#: The original's import paths of modules that live in ``toto.original``.
ORIGINAL_PATHS = ("toto.dbconnection", "toto.session", "toto.secret", "toto.tasks", "toto.clientsessioncache")


def test_the_request_path_reaches_the_seed_surface_through_one_seam() -> None:
    reached = {
        f"{module} imports {target}"
        for module, imports in import_graph(typing=True).items()
        if module.startswith(REQUEST_PATH)
        for target, _, _ in imports
        if (target.startswith("toto.original") or target in ORIGINAL_PATHS) and target != SEAM
    }
    assert sorted(reached) == []


def test_the_originals_import_paths_are_the_seed_modules_themselves() -> None:
    """``import toto.session`` gives ``toto.original.session`` itself, whichever is imported
    first, so what is set through one name (``TotoSession.set_serializer``) is set for both."""
    script = "\n".join(
        [
            "import importlib, sys",
            f"for name in {ORIGINAL_PATHS!r}:",
            "    old = importlib.import_module(name)",
            "    new = importlib.import_module('toto.original.' + name.rpartition('.')[2])",
            "    assert old is new is sys.modules[name], name",
            "from toto.session import SESSION_ID_LENGTH, TotoSession",
            "from toto.dbconnection import DBConnection, Pending",
            "from toto.secret import password_hash, verify_password",
            "from toto.tasks import InstancePool, TaskQueue",
            "from toto.clientsessioncache import AESCipher, ClientCache",
            "from toto.handler import TotoHandler",
            "import toto.session, toto.original.session",
            "toto.session.TotoSession.set_serializer(__import__('json'))",
            "assert toto.original.session.TotoSession.loads(toto.session.TotoSession.dumps({'a': 1})) == {'a': 1}",
            "assert TotoHandler.get_argument and SESSION_ID_LENGTH and DBConnection and Pending and password_hash",
            "print('ok')",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
