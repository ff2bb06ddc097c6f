"""The fuzz suite's server and its bookkeeping: one server per module (memory storage, every
serializer plugin), the inputs sent, and the checks made when the module ends."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST
from tests.fuzz.wire import Sent, rss_bytes

#: Examples per property: a short run in ``nox -s tests``; ``nox -s fuzz`` sets it high.
EXAMPLES = int(os.environ.get("TOTO_TEST_FUZZ_EXAMPLES", "150"))
#: How much the server's resident memory may grow over a module's inputs.
MEMORY_GROWTH_BOUND = 200 * 1024 * 1024

SENT = Sent()
#: What the decoding bombs did: (shape, body bytes, status, peak growth in bytes), for the summary.
BOMB_PEAKS: list[tuple[str, int, int, int]] = []


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[ServerProcess]:
    """A server to throw inputs at; when the module is done it must be alive, with no
    traceback in its log and its memory bounded."""
    # Short timeouts: an input that leaves a request unfinished costs the run seconds, not half a minute.
    options = {
        **FAST,
        "database": "memory",
        "logging": "info",
        "max_body_size": 256 * 1024,
        "xheaders": True,
        "idle_timeout": 2,
        "body_timeout": 2,
    }
    with ServerProcess(options, cwd=BASIC_APP) as server:
        assert server.proc is not None
        before = rss_bytes(server.proc.pid)
        yield server
        assert server.proc.poll() is None, "the server died:\n" + server.output()[-5000:]
        assert server.client().call("echo", {"alive": True}) == {"alive": True}
        growth = rss_bytes(server.proc.pid) - before
        log = server.output()
        SENT.tracebacks += log.count("Traceback")
        assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:5000]
        assert growth < MEMORY_GROWTH_BOUND, f"the server grew by {growth / 2**20:.0f} MiB"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BOMB_PEAKS:
        write = terminalreporter.write_line
        write("decoding bombs: peak server memory per MiB of body")
        write(f"  {'shape':<28} {'body':>9} {'status':>6} {'peak':>10} {'per MiB':>8}")
        for shape, size, status, peak in sorted(BOMB_PEAKS):
            per_mib = f"{peak / size:.1f}" if size >= 2**20 else "-"  # a few bytes: no ratio to speak of
            write(f"  {shape:<28} {size / 2**20:>5.1f} MiB {status:>6} {peak / 2**20:>6.1f} MiB {per_mib:>8}")
    if SENT.inputs:
        terminalreporter.write_line(
            f"fuzz: {SENT.inputs} inputs sent, {SENT.tracebacks} tracebacks in the server log, "
            f"answers by status {dict(sorted(SENT.statuses.items()))}"
        )
