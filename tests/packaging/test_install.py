"""Every distribution installs as released: fresh virtual environments get the toto distributions
from a folder of built wheels (``nox -s build``: dist/) and their dependencies from the index, then
serve and answer a signed call."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import tempfile
import uuid
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from toto.client import TotoClient
from toto.testing import ServerProcess

from tests.conftest import FAST, TESTS
from tests.redis.conftest import delete_keys, ensure_machine_redis

ROOT = TESTS.parent
DIST = ROOT / "dist"
_spec = importlib.util.spec_from_file_location("toto_build_tool", ROOT / "tools" / "build.py")
assert _spec is not None and _spec.loader is not None
toto_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toto_build)

WHOAMI = '''"""Answers the caller's user id."""

from toto.invocation import authenticated


@authenticated
def invoke(handler, parameters):
    return {"user_id": handler.session.user_id}
'''


@contextlib.contextmanager
def building_from_the_checkout() -> Iterator[None]:
    """One build from the checkout's sources at a time across xdist workers: setuptools builds
    inside the source tree (build/, *.egg-info), so two builds of one distribution collide."""
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"toto-build-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sources_newer_than(made: float) -> bool:
    for distribution in toto_build.distributions():
        for path in [distribution / "pyproject.toml", *(distribution / "src").rglob("*")]:
            if path.is_file() and "egg-info" not in str(path) and path.stat().st_mtime > made:
                return True
    return False


@pytest.fixture(scope="module")
def dist() -> Path:
    """dist/ with a wheel and an sdist of every distribution, rebuilt when a source is newer."""
    with building_from_the_checkout():
        wheels = list(DIST.glob("*.whl")) if DIST.exists() else []
        expected = len(toto_build.distributions())
        oldest = min((w.stat().st_mtime for w in wheels), default=0.0)
        if len(wheels) != expected or len(list(DIST.glob("*.tar.gz"))) != expected or _sources_newer_than(oldest):
            toto_build.build(DIST)
    return DIST


@pytest.fixture
def app(tmp_path: Path) -> Path:
    methods = tmp_path / "app" / "methods"
    methods.mkdir(parents=True)
    (methods / "__init__.py").write_text("")
    (methods / "whoami.py").write_text(WHOAMI)
    return methods.parent


class FreshEnv:
    """A new virtual environment (no toto, nothing of the test run's) with its own python."""

    def __init__(self, path: Path) -> None:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        self.path = path
        self.python = str(path / "bin" / "python")

    def install(self, dist: Path, *requirements: str) -> dict[str, str]:
        """``pip install --find-links dist ...``; the URL each distribution came from, by name."""
        return self.pip(["install", "--find-links", str(dist), *requirements])

    def pip(self, arguments: list[str], cwd: Path | None = None) -> dict[str, str]:
        """``pip <arguments>`` (an install); the URL each distribution came from, by name."""
        report = self.path / "report.json"
        done = subprocess.run(
            [self.python, "-m", "pip", *arguments, "-q", "--report", str(report)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        installed = json.loads(report.read_text())["install"]
        return {item["metadata"]["name"]: item["download_info"]["url"] for item in installed}

    def serve(self, app: Path, **options: object) -> ServerProcess:
        options = {**FAST, "method_module": "methods", **options}
        return ServerProcess(options, cwd=str(app), env=self.clean_env(), python=self.python)

    def toto(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "toto", *args], capture_output=True, text=True, timeout=120, env=self.clean_env()
        )

    @staticmethod
    def clean_env() -> dict[str, str]:
        """The environment without what would put the test run's packages on the path."""
        return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TOTO_PLUGINS")}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[FreshEnv]:
    yield FreshEnv(tmp_path / "venv")


def check_came_from(sources: dict[str, str], dist: Path, names: list[str]) -> None:
    toto_dists = sorted(name for name in sources if name.startswith("toto-"))
    assert toto_dists == sorted(names), sources
    for name in names:
        assert sources[name].startswith(dist.as_uri() + "/"), f"{name} came from {sources[name]}, not {dist}"
    others = [name for name in sources if not name.startswith("toto-")]
    assert others, "the dependencies come from the index"


def signed_call(server: ServerProcess) -> None:
    client = TotoClient(server.url)
    name = f"installed-{uuid.uuid4().hex[:8]}"
    client.create(name, "a long secret")
    assert client.call("whoami") == {"user_id": name}


def readme_commands(after: str) -> list[list[str]]:
    """The pip commands (without ``pip``) of the first shell block after ``after`` in the README."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(re.escape(after) + r".*?```sh\n(.*?)```", readme, re.S)
    assert block, f"README lost the install commands after {after!r}"
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [line[1:] for line in lines if line and line[0] == "pip"]


@pytest.mark.parametrize("command", readme_commands("Install them from a checkout"), ids=" ".join)
def test_the_readmes_checkout_install_serves(fresh: FreshEnv, app: Path, command: list[str], redis_url: str) -> None:
    with building_from_the_checkout():
        sources = fresh.pip(command, cwd=ROOT)
    for name, url in sources.items():
        if name.startswith("toto-"):
            assert url.startswith(ROOT.as_uri() + "/"), f"{name} came from {url}, not the checkout"
    prefix = f"toto-test:install-{uuid.uuid4().hex[:8]}:"
    options = (
        {"database": "redis", "database_url": redis_url, "redis_prefix": prefix} if "toto-redis" in sources else {}
    )
    try:
        with fresh.serve(app, **options) as server:
            signed_call(server)
    finally:
        delete_keys(redis_url, prefix)


def test_the_readmes_wheel_folder_install_is_the_one_tested_here() -> None:
    assert readme_commands("or from a folder of built wheels") == [
        ["install", "--find-links", "dist", "toto-core", "toto-redis"]
    ]


def test_toto_core_alone_serves_on_memory(dist: Path, fresh: FreshEnv, app: Path) -> None:
    sources = fresh.install(dist, "toto-core")
    check_came_from(sources, dist, ["toto-core"])
    listed = fresh.toto("plugins")
    assert listed.returncode == 0 and listed.stdout.startswith("toto-core 0.1.0"), listed.stderr
    assert [line for line in listed.stdout.splitlines() if not line.startswith(" ")] == ["toto-core 0.1.0"]
    with fresh.serve(app, logging="info") as server:
        signed_call(server)
        assert "(database: memory," in server.output()
    # The fast transports are extras: without them, one line saying what to install.
    missing = fresh.toto("serve", "--http=granian", "--database=memory", "--port=1")
    assert missing.returncode == 2, missing.stderr
    assert "pip install 'granian>=2.8,<3' (the toto-core[granian] extra)" in missing.stderr, missing.stderr


def test_toto_core_and_toto_redis_serve_on_redis(dist: Path, fresh: FreshEnv, app: Path, redis_url: str) -> None:
    sources = fresh.install(dist, "toto-core", "toto-redis")
    check_came_from(sources, dist, ["toto-core", "toto-redis"])
    prefix = f"toto-test:install-{uuid.uuid4().hex[:8]}:"
    try:
        with fresh.serve(app, database="redis", database_url=redis_url, redis_prefix=prefix) as server:
            signed_call(server)
    finally:
        delete_keys(redis_url, prefix)


def test_toto_core_and_toto_sql_with_sqlite_serve_on_the_embedded_default(
    dist: Path, fresh: FreshEnv, app: Path
) -> None:
    sources = fresh.install(dist, "toto-core", "toto-sql[sqlite]")
    check_came_from(sources, dist, ["toto-core", "toto-sql"])
    with fresh.serve(app, logging="info") as server:
        signed_call(server)
        assert "(database: sqlite," in server.output()
    assert (app / "toto.db").exists(), "no --database: toto-sql's embedded SQLite in the working directory"


@pytest.fixture
def redis_url() -> str:
    ensure_machine_redis()
    return "redis://127.0.0.1:6379/0"


def test_the_build_packs_the_js_client_as_npm_would_publish_it(tmp_path: Path) -> None:
    import tarfile

    tarball = toto_build.pack_js_client(tmp_path)
    assert tarball is not None, "npm is missing: run `python tests/services.py` (installs nodejs and npm)"
    version = json.loads((ROOT / "clients" / "js" / "package.json").read_text())["version"]
    assert tarball.name == f"toto-client-{version}.tgz"
    with tarfile.open(tarball) as packed:
        names = set(packed.getnames())
    assert {"package/package.json", "package/src/toto-client.js", "package/src/toto-client.d.ts"} <= names
