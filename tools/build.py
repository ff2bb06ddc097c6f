#!/usr/bin/env python3
"""Build a wheel and an sdist of every Toto distribution into dist/ (``nox -s build``), and the
JavaScript client's npm tarball (``npm pack`` of clients/js) when npm is installed.

``python tools/build.py [OUTDIR]`` with the ``build`` package installed. Until the
distributions are on PyPI and npm, a folder of them is how they are installed as
released: ``pip install --find-links dist toto-core toto-redis`` and
``npm install ./dist/toto-client-0.1.0.tgz``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def distributions() -> list[Path]:
    """The directory of every distribution: toto_core/ and each plugins/*/ with a pyproject.toml."""
    return [ROOT / "toto_core", *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))]


def build(outdir: Path) -> list[Path]:
    """Build every distribution into an empty ``outdir``; return the files made."""
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    for source in distributions():
        subprocess.run(
            [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(outdir), str(source)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # setuptools leaves its work tree in the source; stale copies there only mislead.
        shutil.rmtree(source / "build", ignore_errors=True)
    return sorted(outdir.iterdir())


def pack_js_client(outdir: Path) -> Path | None:
    """``npm pack`` of clients/js into ``outdir``: the tarball (None without npm)."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    before = set(outdir.glob("toto-client-*.tgz"))
    subprocess.run(
        [npm, "pack", "--silent", "--pack-destination", str(outdir)],
        cwd=ROOT / "clients" / "js",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    made = sorted(set(outdir.glob("toto-client-*.tgz")) - before) or sorted(outdir.glob("toto-client-*.tgz"))
    return made[-1] if made else None


def main() -> int:
    outdir = (Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist").resolve()
    made = build(outdir)
    tarball = pack_js_client(outdir)
    if tarball is None:
        print("npm is not installed: the JavaScript client's tarball was not made", file=sys.stderr)
    for path in sorted([*made, *([tarball] if tarball else [])]):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
