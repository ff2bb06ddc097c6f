"""Shared test helpers: where the test applications live, and servers started per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from toto.testing.server import ServerProcess

TESTS = Path(__file__).parent
# The example plugins' own tests run against an installed plugin (tests/core/test_readme.py).
collect_ignore = ["plugins"]
BASIC_APP = str(TESTS / "apps" / "basic")
# Cheap password hashing and quiet logs: what every test server gets unless it says otherwise.
FAST = {"password_cost": 10, "logging": "warning"}
#: The third-party plugins of the tests (tests/plugins/), each pip-installed on its own by ``plugin_path``.
EXAMPLE_PLUGINS = (
    "toto_example",
    "toto_example_broken",
    "toto_example_clash",
    "toto_example_route",
    "toto_example_signing",
    "toto_example_transport",
    "toto_example_typo",
)


@pytest.fixture(scope="session")
def basic_app() -> str:
    """Directory of the shared test application (method_module=methods)."""
    return BASIC_APP


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(cwd=BASIC_APP, env=None, args=None, **options)`` starts a server of the
    app in ``cwd`` with ``FAST`` and the options; every server it started is stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        cwd: str = BASIC_APP, env: dict[str, str] | None = None, args: list[str] | None = None, **options: Any
    ) -> ServerProcess:
        server = ServerProcess({**FAST, **options}, cwd=cwd, env=env, args=args)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """pip-install each third-party example plugin into a directory of its own, as a user would;
    ``env_with(plugin_path, name, ...)`` puts some of them on a server's path."""
    target = tmp_path_factory.mktemp("site")
    sources = tmp_path_factory.mktemp("plugin-sources")
    for name in EXAMPLE_PLUGINS:
        # Each xdist worker builds from its own copy: setuptools builds in the source tree
        # (build/, *.egg-info), and two workers building one tree at once collide there.
        source = shutil.copytree(
            TESTS / "plugins" / name, sources / name, ignore=shutil.ignore_patterns("build", "*.egg-info")
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target / name),
                str(source),
            ],
            check=True,
            timeout=300,
        )
    return str(target)


def env_with(plugin_path: str, *names: str) -> dict[str, str]:
    """Environment variables that make the example plugins ``names`` installed in a subprocess."""
    paths = [os.path.join(plugin_path, n) for n in names]
    return {"PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


# -- every transport -----------------------------------------------------------------------------

#: The HTTP transports (``--http``); the tests of ``EVERY_TRANSPORT`` run on each.
TRANSPORTS = ("tornado", "granian", "uvicorn")
#: The protocol, compat and fault tests: what a client sees must not depend on the transport.
#: Faults run on Redis as the representative backend (every backend runs them on Tornado).
EVERY_TRANSPORT = (
    "core/test_protocol.py",
    "core/test_cross_site.py",
    "core/test_bad_input.py",
    "core/test_malformed_input.py",
    "core/test_signing.py",
    "core/test_authenticators.py",
    "core/test_accounts.py",
    "core/test_health.py",
    "core/test_connections.py",
    "compat/",
    "cli/test_daemon.py",
    "redis/test_http.py",
    "msgpack/test_bad_input.py",
)


def on_every_transport(path: Path) -> bool:
    relative = path.relative_to(TESTS).as_posix()
    return any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in EVERY_TRANSPORT)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if on_every_transport(Path(metafunc.definition.path)):
        # Module scope: tests are grouped by transport, and module-wide servers start once for each.
        metafunc.parametrize("http_transport", TRANSPORTS, scope="module")


@pytest.fixture(scope="module")
def http_transport() -> str:
    """The transport of this module's servers: Tornado, unless the module runs on every one."""
    return "tornado"


@pytest.fixture(scope="module", autouse=True)
def _serve_on_transport(http_transport: str) -> Iterator[None]:
    """Servers started for this module's tests (``ServerProcess``) serve on ``http_transport``."""
    before = os.environ.pop("TOTO_TEST_HTTP", None)
    if http_transport != "tornado":  # the default: servers get no --http at all
        os.environ["TOTO_TEST_HTTP"] = http_transport
    yield
    os.environ.pop("TOTO_TEST_HTTP", None)
    if before is not None:
        os.environ["TOTO_TEST_HTTP"] = before
