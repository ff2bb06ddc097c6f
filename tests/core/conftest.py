"""Fixtures of the core's tests: servers of the basic app on memory storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.testing import ServerProcess, unique_user

from tests.conftest import BASIC_APP
from tests.conftest import FAST as SHARED_FAST

#: The shared quick options (scrypt at N=2**10, quiet logs), on memory storage.
FAST = {**SHARED_FAST, "database": "memory"}


@pytest.fixture(scope="module")
def server(http_transport: str) -> Iterator[ServerProcess]:
    """One server of the basic app for the module (on each transport where the module runs on every one)."""
    with ServerProcess(FAST, cwd=BASIC_APP) as srv:
        yield srv


@pytest.fixture
def start_server(start_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """The shared ``start_server``, on memory storage unless the test names another database."""

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, **options: Any) -> ServerProcess:
        return start_server(env=env, args=args, **{"database": "memory", **options})

    return start


@pytest.fixture
def user_id() -> str:
    """A user id no other test uses."""
    return unique_user()
