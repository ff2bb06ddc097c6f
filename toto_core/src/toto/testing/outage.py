"""What a database outage must look like to Toto's callers, and the checks that say so.

A storage that cannot reach its database raises ``StorageUnavailable`` (1013, HTTP
503) within ``OUTAGE_BOUND`` seconds, never later and never another error, and heals
by itself when the database returns.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from toto.client import TotoClientError
from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, StorageUnavailable

#: Seconds within which a database that went away is answered with 1013.
OUTAGE_BOUND = 5.0


def assert_unavailable_in_time(calls: Iterable[Callable[[], Any]]) -> None:
    """Each call (of a Toto client) fails with 1013 and HTTP 503 within the bound."""
    for number, call in enumerate(calls, 1):
        started = time.monotonic()
        try:
            answer = call()
        except TotoClientError as error:
            elapsed = time.monotonic() - started
            assert elapsed < OUTAGE_BOUND, f"call {number} took {elapsed:.1f} s"
            assert (error.code, error.status) == (ERROR_SERVICE_UNAVAILABLE, 503), f"call {number}: {error}"
        else:
            raise AssertionError(f"call {number} answered {answer!r} during the outage")


async def assert_storage_unavailable_in_time(calls: Iterable[Awaitable[Any]]) -> None:
    """Each storage call raises ``StorageUnavailable`` (1013/503) within the bound."""
    for number, call in enumerate(calls, 1):
        started = time.monotonic()
        try:
            answer = await call
        except StorageUnavailable as error:
            elapsed = time.monotonic() - started
            assert elapsed < OUTAGE_BOUND, f"storage call {number} took {elapsed:.1f} s"
            assert (error.code, error.status) == (ERROR_SERVICE_UNAVAILABLE, 503), f"storage call {number}: {error}"
        else:
            raise AssertionError(f"storage call {number} answered {answer!r} during the outage")
