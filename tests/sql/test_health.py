"""/_health of a server on PostgreSQL or MySQL when a TCP proxy cuts the database off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.checks import check_health_follows_an_outage
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
