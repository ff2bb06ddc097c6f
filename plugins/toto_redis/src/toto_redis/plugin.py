"""The hooks toto-redis implements (entry point ``toto``: ``redis = "toto_redis.plugin"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import toto

from toto_redis.connection import DEFAULT_PREFIX, DEFAULT_TIMEOUT
from toto_redis.eventbus import RedisEventBus
from toto_redis.storage import RedisStorage


@toto.hookimpl
def toto_register_storage() -> dict[str, Callable[[Any], RedisStorage]]:
    return {"redis": RedisStorage.from_options}


@toto.hookimpl
def toto_register_event_buses() -> dict[str, Callable[[Any], RedisEventBus]]:
    return {"redis": RedisEventBus.from_options}


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
        "redis_timeout",
        DEFAULT_TIMEOUT,
        help="seconds to wait for Redis before a request fails with 1013",
        type=float,
    )
