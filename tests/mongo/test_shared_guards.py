"""The guards of a deployment hold across servers on one MongoDB: no lost session update, no
replayed signature, one login limit (issue 13)."""

from __future__ import annotations

from tests.guards import (
    check_login_limit_across_servers,
    check_no_lost_updates_across_servers,
    check_replays_refused_across_servers_and_restarts,
)
from tests.mongo.test_http import on_mongo


def test_no_update_of_one_session_is_lost_across_servers(start_server, mongo_url: str) -> None:
    a, b = start_server(**on_mongo(mongo_url)), start_server(**on_mongo(mongo_url))
    check_no_lost_updates_across_servers(a, b)


def test_a_signed_request_runs_once_across_servers_and_restarts(start_server, mongo_url: str) -> None:
    check_replays_refused_across_servers_and_restarts(start_server, on_mongo(mongo_url))


def test_the_login_limit_is_one_for_all_servers(start_server, mongo_url: str) -> None:
    options = on_mongo(mongo_url, login_attempts=3)
    check_login_limit_across_servers(start_server(**options), start_server(**options), attempts=3)
