"""Decoding bombs for every serializer (issue 23): bodies that decode to millions of values
are refused (413, 1011) with the server's peak memory bounded by the body, not by what it
would decode to. ``nox -s fuzz`` sends every shape at 10 MiB and prints the peak per MiB of
body; the regular suite sends the worst shapes at 2 MiB."""

from __future__ import annotations

import pytest
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST
from tests.fuzz.bombs import BOMBS
from tests.fuzz.conftest import BOMB_PEAKS, EXAMPLES
from tests.fuzz.wire import Sent, Wire, check_answer, peak_rss_since, reset_peak_rss

LONG = EXAMPLES > 500
#: The body of each bomb: 10 MiB (the default max_body_size) in the long run.
SIZE = (10 if LONG else 2) * 1024 * 1024
SHORT_RUN = (
    "msgpack empty maps", "msgpack short strings", "json empty objects", "json short strings",
    "bson empty documents", "bson nulls",
)  # fmt: skip
#: Growth of the server's peak memory a bomb may cause: its body, buffered twice by the
#: transport, and what the refusal costs, with room for a loaded machine's noise.
PER_BODY_BYTE, ROOM = 4, 24 * 1024 * 1024


@pytest.mark.parametrize("shape", [name for name in BOMBS if LONG or name in SHORT_RUN])
def test_decoding_bombs_are_refused_with_bounded_memory(shape: str) -> None:
    content_type, body = BOMBS[shape](SIZE)
    # A server of its own: memory a bomb before it freed stays in the process and would hide the next one's.
    options = {**FAST, "database": "memory", "max_body_size": SIZE + 4096, "logging": "warning"}
    with ServerProcess(options, cwd=BASIC_APP) as server:
        assert server.proc is not None
        wire = Wire(server.port, Sent())
        status, headers, data = wire.send("POST", "/", {"Content-Type": "application/json"}, b'{"method": "echo"}')
        assert status == 200
        before = reset_peak_rss(server.proc.pid)
        status, headers, data = wire.send("POST", "/", {"Content-Type": content_type}, body)
        peak = peak_rss_since(server.proc.pid, before)
        wire.close()
        BOMB_PEAKS.append((shape, len(body), status, peak))
        check_answer(status, headers, data, "POST")
        assert status in (400, 413), f"{shape}: HTTP {status} {data[:200]!r}"
        bound = PER_BODY_BYTE * len(body) + ROOM
        assert peak <= bound, f"{shape}: the server grew by {peak / 2**20:.0f} MiB for {len(body) / 2**20:.1f} MiB"
        assert server.client().call("echo", {"alive": True}) == {"alive": True}
        assert "Traceback" not in server.output()


def test_the_short_run_holds_a_bomb_of_every_serializer() -> None:
    assert {name.split()[0] for name in SHORT_RUN} == {name.split()[0] for name in BOMBS} == {"json", "msgpack", "bson"}
