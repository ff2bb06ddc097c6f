#!/usr/bin/env python3
"""Run nox from a fresh clone with nothing but Python 3.10+.

Creates .venv-tools/ with nox on first use, then runs ``nox <args>`` from the
repository root: ``python3 tools/nox.py -s tests``.
"""

from __future__ import annotations

import os
import signal
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
    child = subprocess.Popen([str(nox), *sys.argv[1:]])
    while True:
        try:
            code = child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached nox and what it runs too (one process group): let them finish
            # and report, with no traceback of this wrapper on top.
            continue
        return 130 if code == -signal.SIGINT else code


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # during the first run's setup
        raise SystemExit(130) from None
