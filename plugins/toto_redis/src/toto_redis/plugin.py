"""The hooks toto-redis implements (entry point ``toto``: ``redis = "toto_redis.plugin"``).

Every Toto server loads this module at start-up, so it imports redis-py only when a
server really uses Redis: a server on another database does not carry its memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import toto

from toto_redis.defaults import DEFAULT_EVENT_HISTORY, DEFAULT_PREFIX, DEFAULT_TIMEOUT, DEFAULT_WAIT_TIMEOUT

if TYPE_CHECKING:
    from toto_redis.eventbus import RedisEventBus
    from toto_redis.storage import RedisStorage


def redis_storage(options: Any) -> RedisStorage:
    from toto_redis.storage import RedisStorage

    return RedisStorage.from_options(options)


def redis_event_bus(options: Any) -> RedisEventBus:
    from toto_redis.eventbus import RedisEventBus

    return RedisEventBus.from_options(options)


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], RedisStorage]]:
    return {"redis": redis_storage}


@toto.hookimpl
def toto_register_event_buses() -> dict[str, Callable[[Any], RedisEventBus]]:
    return {"redis": redis_event_bus}


@toto.hookimpl
def toto_add_options(options: Any) -> None:
    options.define(
        "redis_prefix",
        DEFAULT_PREFIX,
        help="prefix of every Redis key of this app, so several apps can share one Redis database",
        type=str,
    )
    options.define(
        "redis_event_prefix",
        None,
        help="prefix of the Redis event bus's channel and queue (default: redis_prefix + 'events:'); "
        "servers that exchange events need the same one",
        type=str,
    )
    options.define(
        "redis_event_history",
        DEFAULT_EVENT_HISTORY,
        help="broadcasts the Redis event bus keeps in a stream, from which a server that lost its connection "
        "(or a socket, by position) reads what it missed; 0 keeps none (then the bus is at most once)",
        type=int,
    )
    options.define(
        "redis_timeout",
        DEFAULT_TIMEOUT,
        help="seconds to wait for Redis before a request fails with 1013",
        type=float,
    )
    options.define(
        "redis_wait_replicas",
        0,
        help="replicas that must confirm each storage write (Redis WAIT) before it is acknowledged; a write "
        "fewer confirm within redis_wait_timeout answers 1013. 0: acknowledge at once (a failover can lose "
        "the last writes)",
        type=int,
    )
    options.define(
        "redis_wait_timeout",
        DEFAULT_WAIT_TIMEOUT,
        help="seconds a storage write waits for redis_wait_replicas replicas to confirm it",
        type=float,
    )
