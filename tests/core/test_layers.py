"""Low layers import nothing above them (ARCHITECTURE.md "One call pipeline"): the options,
the exceptions, the interfaces and the contract kit load no Tornado and no transport, so a
storage plugin that imports ``toto.options`` carries none of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
