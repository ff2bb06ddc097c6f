"""/_health of a server on PostgreSQL or MySQL when a TCP proxy cuts the database off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.checks import check_health_follows_an_outage, health_turns
from tests.proxy import TcpProxy
from tests.sql.conftest import NETWORKED, backend_port, on, through


@pytest.mark.parametrize("backend", NETWORKED)
@pytest.mark.parametrize("fault", ["cut", "blackhole", "freeze"])
def test_health_turns_503_within_5_s_of_losing_the_database_and_200_after(
    start_server, database_url: Callable[[str], str], prefix: str, backend: str, fault: str
) -> None:
    database_url(backend)  # the service is up
    with TcpProxy("127.0.0.1", backend_port(backend)) as proxy:
        server = start_server(**on(backend, through(proxy, backend), prefix))
        check_health_follows_an_outage(server, getattr(proxy, fault), proxy.restore, ["storage"])


def test_the_readmes_example_answer_has_the_shape_of_a_real_one(
    start_server, database_url: Callable[[str], str], prefix: str
) -> None:
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = json.loads(re.search(r'```json\n(\{"status": "down".*?)```', readme, re.S).group(1))  # type: ignore[union-attr]
    database_url("postgres")
    with TcpProxy("127.0.0.1", backend_port("postgres")) as proxy:
        server = start_server(**on("postgres", through(proxy, "postgres"), prefix), event_bus="local")
        proxy.blackhole()
        body = health_turns(server.url, 503, 5)
    assert set(body) == set(example) and body["down"] == example["down"]
    for name, part in example["parts"].items():
        assert set(body["parts"][name]) == set(part), (name, body)
    assert body["parts"]["storage"]["error"] == example["parts"]["storage"]["error"]
