"""Every session a developer or CI runs: ``python3 tools/nox.py -s <name>``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
#: Every third-party release the sessions install, pinned (``nox -s lock`` writes it). CI installs
#: exactly these, so a release elsewhere cannot turn main red; ``nox -s latest`` tries the newest.
CONSTRAINTS = ROOT / "constraints.txt"


def pinned(session: nox.Session) -> None:
    """Make every pip of the session, and of what it runs (the tests build venvs and install
    plugins), take the versions of constraints.txt."""
    session.env["PIP_CONSTRAINT"] = str(CONSTRAINTS)


def plugin_specs() -> list[str]:
    """Each distribution under plugins/, editable, with its `all` and `test` extras when it has them."""
    specs = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        text = pyproject.read_text()
        section = text.split("[project.optional-dependencies]", 1)
        extras = []
        if len(section) == 2:
            body = section[1].split("\n[", 1)[0]
            extras = [e for e in ("all", "test") if re.search(rf"^{e}\s*=", body, re.M)]
        path = f"./{pyproject.parent.relative_to(ROOT).as_posix()}"
        specs.append(f"{path}[{','.join(extras)}]" if extras else path)
    return specs


def install_everything(session: nox.Session, pin: bool = True) -> None:
    if pin:
        pinned(session)
    # [speed]: the suite tests the orjson codec; tests/core/test_json_codec.py also runs without it.
    core = "./toto_core[speed,types,dev,granian,uvicorn,clientcache]"
    session.install("-e", core, *[x for spec in plugin_specs() for x in ("-e", spec)])
    session.install("-r", "tests/requirements.txt")


@nox.session
def tests(session: nox.Session) -> None:
    """Install toto-core and every plugin, then run the whole suite against real services."""
    install_everything(session)
    run_suite(session)


def run_suite(session: nox.Session) -> None:
    session.run("python", "tests/services.py")
    # Four workers: the suite mostly waits on servers, databases and sockets (18 min in one
    # process on the 2-core machine, 6 with four; every test has its own ports and prefixes).
    session.run("pytest", *(session.posargs or ["tests", "-q", "-ra", "-n", "4"]))


@nox.session
def latest(session: nox.Session) -> None:
    """The suite on the newest release of every dependency (no constraints.txt): drift shows
    here first, without breaking main; ``nox -s lock`` then takes it on purpose."""
    session.env.pop("PIP_CONSTRAINT", None)
    session.install("--upgrade", "pip")
    install_everything(session, pin=False)
    session.install("--upgrade", "--upgrade-strategy", "eager", "-r", "tests/requirements.txt")
    run_suite(session)


@nox.session
def lock(session: nox.Session) -> None:
    """Write constraints.txt: the newest releases that fit what every session installs (tests,
    typecheck, build, bench), resolved together in one fresh environment. Run it on purpose,
    then run the suite and commit the file with what changed."""
    session.env.pop("PIP_CONSTRAINT", None)
    session.run("python", "-m", "venv", "--clear", str(Path(session.virtualenv.location) / "resolve"), external=True)
    python = str(Path(session.virtualenv.location) / "resolve" / "bin" / "python")
    editables = [
        "-e",
        "./toto_core[speed,types,dev,granian,uvicorn,clientcache,testing]",
        *[x for spec in plugin_specs() for x in ("-e", spec)],
    ]
    requirements = ["-r", "tests/requirements.txt", "-r", "bench/requirements.txt"]
    # setuptools too: the builds of our distributions (setuptools>=77) take its pin as well.
    session.run(python, "-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools", external=True)
    session.run(python, "-m", "pip", "install", "-q", *editables, *requirements, MYPY, "build>=1.2", external=True)
    frozen = session.run(python, "-m", "pip", "freeze", "--all", "--exclude-editable", external=True, silent=True)
    lines = [
        line
        for line in str(frozen).splitlines()
        if line and not line.startswith(("pip==", "-e ", "#")) and not re.match(r"toto[-_]", line)
    ]
    CONSTRAINTS.write_text(
        "# Written by `nox -s lock` (the newest releases that fit every session, resolved together);\n"
        "# every session installs these. Update on purpose: nox -s lock, nox -s tests, commit.\n"
        + "\n".join(sorted(lines, key=str.lower))
        + "\n"
    )
    session.log(f"wrote {len(lines)} pins to {CONSTRAINTS.name}")


@nox.session
def cluster(session: nox.Session) -> None:
    """The fault suite across hosts (tests/cluster, root needed): three servers in network
    namespaces behind HAProxy, Redis with Sentinels, PostgreSQL and NATS, every fault in turn;
    prints the fault table and writes it to cluster-faults.md (``-- -k short`` for the short run)."""
    install_everything(session)
    session.env["TOTO_TEST_CLUSTER"] = "full"
    session.env.setdefault("TOTO_TEST_CLUSTER_TABLE", str(ROOT / "cluster-faults.md"))
    session.run("pytest", *(session.posargs or ["tests/cluster", "-q", "-ra", "-s", "-n", "0"]))


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz suite of tests/fuzz long: TOTO_TEST_FUZZ_EXAMPLES examples per property (default 5000)."""
    install_everything(session)
    session.env.setdefault("TOTO_TEST_FUZZ_EXAMPLES", "5000")
    session.run("pytest", "tests/fuzz", "-q", "-ra", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """50 clients, 100,000 mixed calls on PostgreSQL and Redis, one process and --processes=2:
    counts exact, no unexpected error, p99 printed (see bench/soak.py; --calls=N for fewer)."""
    install_everything(session)
    session.run("python", "tests/services.py")
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """A wheel and an sdist of every distribution in dist/, as they would be released."""
    pinned(session)
    session.install("build>=1.2")
    session.run("python", "tools/build.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


MYPY = "mypy==2.4.1"


def source_packages() -> list[str]:
    """The import package of every distribution: toto_core/src/toto, plugins/*/src/<name>."""
    found = [ROOT / "toto_core/src/toto"]
    found += sorted(path for path in ROOT.glob("plugins/*/src/*") if (path / "__init__.py").exists())
    return [path.relative_to(ROOT).as_posix() for path in found]


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict, on the core and every plugin (mypy.ini)."""
    pinned(session)
    plugins = [x for spec in plugin_specs() for x in ("-e", spec)]
    core = "./toto_core[speed,types,dev,granian,uvicorn,clientcache,testing]"
    session.install(MYPY, "-e", core, "types-psutil", *plugins)
    packages = source_packages()
    session.run("mypy", *packages, env={"MYPYPATH": os.pathsep.join(str(Path(p).parent) for p in packages)})


@nox.session
def demo(session: nox.Session) -> None:
    """Serve the example app on http://127.0.0.1:8888 using SQLite at examples/demo/toto.db."""
    pinned(session)
    specs = ["-e", "./toto_core"]
    if (ROOT / "plugins/toto_sql").exists():
        specs += ["-e", "./plugins/toto_sql[sqlite]"]
    # The packages are editable, so only their metadata (dependencies, entry points) or the
    # pins call for a new install; otherwise the venv of the last start serves as it is.
    stamp = Path(session.virtualenv.location) / ".toto-demo-installed"
    wanted = demo_fingerprint(specs)
    if stamp.exists() and stamp.read_text() == wanted:
        session.log("reusing the demo's packages (the checkout's packages did not change)")
    else:
        session.install(*specs)
        stamp.write_text(wanted)
    session.chdir("examples/demo")
    session.run("python", "app.py", *session.posargs)


def demo_fingerprint(specs: list[str]) -> str:
    """What the demo's install depends on: the specs, the pins and each package's pyproject.toml."""
    import hashlib

    digest = hashlib.sha256("\n".join(specs).encode())
    for path in (CONSTRAINTS, ROOT / "toto_core/pyproject.toml", ROOT / "plugins/toto_sql/pyproject.toml"):
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@nox.session
def bench(session: nox.Session) -> None:
    """Toto, its peers and a bare Tornado baseline under wrk; `-- --ceilings` for the bare servers (bench/README.md)."""
    install_everything(session)
    if (ROOT / "bench/requirements.txt").exists():
        session.install("-r", "bench/requirements.txt")
    args = list(session.posargs)
    script = "bench/run.py"
    if "--ceilings" in args:
        args.remove("--ceilings")
        script = "bench/ceilings.py"
    session.run("python", script, *args)
