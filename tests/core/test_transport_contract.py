"""Every HTTP transport passes the transport contract (``toto.testing.transport``): slow
clients cut by the timeouts, endless heads and bodies stopped with bounded memory, bodies
that did not arrive whole never run, ``max_connections`` held, refusals in the protocol's
shape. What a transport's HTTP library does its own way is declared here, as
docs/operations.md ("HTTP transports") says it."""

from __future__ import annotations

from toto.testing import TransportContract

from tests.conftest import TRANSPORTS


class TestTornado(TransportContract):
    http = "tornado"


class TestGranian(TransportContract):
    http = "granian"
    # hyper answers a request it cannot parse, and a head over its read buffer, with an empty body.
    library_answers = frozenset({"malformed", "head"})
    # granian shows Toto no connection before its first request: beyond its backpressure
    # (max_connections) connections wait to be accepted.
    queues_beyond_max_connections = True


class TestUvicorn(TransportContract):
    http = "uvicorn"


def test_every_transport_passes_the_contract() -> None:
    assert {TestTornado.http, TestGranian.http, TestUvicorn.http} == set(TRANSPORTS)
