#!/usr/bin/env python3
"""Run nox from a fresh clone with nothing but Python 3.10+.

Creates .venv-tools/ with nox on first use, then runs ``nox <args>`` from the
repository root: ``python3 tools/nox.py -s tests``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".venv-tools"
BIN = TOOLS / ("Scripts" if os.name == "nt" else "bin")


def main() -> int:
    if sys.version_info < (3, 10):
        print("Toto needs Python 3.10 or newer", file=sys.stderr)
        return 2
    nox = BIN / "nox"
    if not nox.exists():
        print(f"setting up {TOOLS.name}/ with nox (first run only)", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run([str(BIN / "python"), "-m", "pip", "install", "-q", "nox==2026.10.20"], check=True)
    os.chdir(ROOT)
    return subprocess.call([str(nox), *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
