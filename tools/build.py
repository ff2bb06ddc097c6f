#!/usr/bin/env python3
"""Build a wheel and an sdist of every Toto distribution into dist/ (``nox -s build``).

``python tools/build.py [OUTDIR]`` with the ``build`` package installed. Until the
distributions are on PyPI, a folder of their wheels is how they are installed as
released: ``pip install --find-links dist toto-core toto-redis``.
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


def main() -> int:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"
    for made in build(outdir.resolve()):
        print(made.relative_to(ROOT) if made.is_relative_to(ROOT) else made)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
