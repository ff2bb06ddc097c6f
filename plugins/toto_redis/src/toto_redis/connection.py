"""What the storage and the event bus share: option values, client construction and
the mapping of connection faults to ``StorageUnavailable``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from toto.exceptions import PluginError, StorageUnavailable

from toto_redis.defaults import DEFAULT_PREFIX, DEFAULT_TIMEOUT, DEFAULT_URL

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "DEFAULT_URL"]

#: Errors that mean "Redis cannot be reached right now", as opposed to a bug or a bad command.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,  # a replica promoted away from us: writes fail until the client reconnects
    OSError,
    asyncio.TimeoutError,
)


def is_redis_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in ("redis", "rediss", "unix")


def normalize_prefix(prefix: str) -> str:
    """End a prefix with ``:`` so that ``app`` and ``app2`` can never see each other's keys."""
    return prefix if prefix.endswith(":") else prefix + ":"


def make_client(url: str, timeout: float, *, blocking_seconds: float = 0.0, retries: int = 1) -> redis_asyncio.Redis:
    """A ``redis.asyncio`` client that fails fast and heals by itself.

    Connect and read timeouts are ``timeout`` (plus ``blocking_seconds`` for clients that
    issue blocking commands such as BLPOP), so a Redis that hangs is noticed within it.
    A dropped connection (Redis restarted, a proxy cut it) is retried ``retries`` times
    on a new connection, which makes the first request after a restart succeed; a
    timeout is not retried, so a request never waits much longer than ``timeout``.
    Idle pooled connections are checked with PING before reuse.
    """
    retry = Retry(
        ExponentialBackoff(cap=0.2, base=0.05) if retries else NoBackoff(),
        retries,
        supported_errors=(RedisConnectionError,),
    )
    try:
        return redis_asyncio.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout + blocking_seconds,
            socket_keepalive=True,
            health_check_interval=30,
            retry=retry,
            decode_responses=False,
        )
    except ValueError as error:
        raise PluginError(
            f"invalid Redis URL {url!r}: {error}; use redis://host:6379/0 (or rediss:// or unix:///path.sock)"
        ) from error


@contextlib.asynccontextmanager
async def unavailable_on_fault(what: str) -> AsyncIterator[None]:
    """Turn "cannot reach Redis" into ``StorageUnavailable`` (answered 1013/503)."""
    try:
        yield
    except UNREACHABLE_ERRORS as error:
        raise StorageUnavailable(f"{what} is unavailable ({type(error).__name__}); try again shortly.") from error
