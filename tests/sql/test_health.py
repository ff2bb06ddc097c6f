"""/_health of a server on PostgreSQL cut off by a TCP proxy answers in the shape the README shows.
(Every backend's health check following an outage is part of the deployment contract.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from toto.testing import TcpProxy, health_turns

from tests.sql.conftest import PG_HOST, PG_PORT, PG_URL, on


def test_the_readmes_example_answer_has_the_shape_of_a_real_one(start_server, postgres_url: str, prefix: str) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = json.loads(re.search(r'```json\n(\{"status": "down".*?)```', readme, re.S).group(1))  # type: ignore[union-attr]
    with TcpProxy(PG_HOST, PG_PORT) as proxy:
        server = start_server(**on("postgres", PG_URL.format(port=proxy.port), prefix), event_bus="local")
        proxy.blackhole()
        body = health_turns(server.url, 503, 5)
    assert set(body) == set(example) and body["down"] == example["down"]
    for name, part in example["parts"].items():
        assert set(body["parts"][name]) == set(part), (name, body)
    assert body["parts"]["storage"]["error"] == example["parts"]["storage"]["error"]
