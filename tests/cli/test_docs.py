"""Runs the marked examples of docs/operations.md and README.md, as a reader would, in one empty directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.operations import alive, free_ports

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- test: (script|file (\S+)) -->\n```\w*\n(.*?)```", re.S)


@pytest.mark.parametrize(
    ("doc", "scripts"),
    [
        ("docs/operations.md", 3),
        ("docs/compat.md", 2),
        ("docs/migrating.md", 1),
        ("README.md", 2),
        ("plugins/toto_prometheus/README.md", 1),
        ("plugins/toto_otel/README.md", 1),
    ],
)
def test_documented_examples_run(tmp_path: Path, doc: str, scripts: int) -> None:
    blocks = BLOCK.findall((ROOT / doc).read_text(encoding="utf-8"))
    assert sum(kind == "script" for kind, _, _ in blocks) >= scripts
    port = free_ports(2)
    (tmp_path / "clients").symlink_to(ROOT / "clients")  # as in a clone: the README uses clients/js
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("PYTEST_ADDOPTS", None)
    try:
        for kind, path, text in blocks:
            text = text.replace("8889", str(port + 1)).replace("8888", str(port))
            if kind == "script":
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", text],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert result.returncode == 0, f"{text}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            else:
                target = tmp_path / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    finally:
        pidfiles = list(tmp_path.rglob("*.pid"))
        leftovers = [int(p.read_text().split()[0]) for p in pidfiles if p.read_text().strip()]
        for pid in leftovers:
            if alive(pid):
                os.kill(pid, 9)
    assert not pidfiles, "the examples must stop every server they start"
