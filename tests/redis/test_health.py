"""/_health of a server on Redis (storage and event bus) when a TCP proxy cuts Redis off."""

from __future__ import annotations

from typing import Any

import pytest
from toto.testing import check_health_follows_an_outage

from tests.redis.conftest import proxied_url


@pytest.mark.parametrize("fault", ["cut", "blackhole", "freeze"])
def test_health_turns_503_within_5_s_of_losing_redis_and_200_after(
    start_server, proxy: Any, prefix: str, fault: str
) -> None:
    url = proxied_url(proxy)
    server = start_server(database="redis", database_url=url, redis_prefix=prefix, event_bus="redis", event_url=url)
    check_health_follows_an_outage(server, getattr(proxy, fault), proxy.restore, ["storage", "event_bus"])


def test_only_the_bus_down_names_only_the_bus(start_server, proxy: Any, redis_url: str, prefix: str) -> None:
    server = start_server(database="memory", event_bus="redis", event_url=proxied_url(proxy), redis_prefix=prefix)
    check_health_follows_an_outage(server, proxy.cut, proxy.restore, ["event_bus"])
