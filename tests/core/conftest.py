from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.testing import ServerProcess, unique_user

from tests.conftest import BASIC_APP

# scrypt at N=2**10 keeps account tests quick; production keeps the default 2**14.
FAST = {"password_cost": 10, "database": "memory", "logging": "warning"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(FAST, cwd=BASIC_APP) as srv:
        yield srv


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with extra options; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, **options: Any) -> ServerProcess:
        srv = ServerProcess({**FAST, **options}, cwd=BASIC_APP, env=env, args=args)
        started.append(srv.start())
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def user_id() -> str:
    """A user id no other test uses."""
    return unique_user()
