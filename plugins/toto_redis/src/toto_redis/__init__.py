"""Redis storage and event bus for Toto: ``--database=redis`` and ``--event_bus=redis``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toto_redis.eventbus import RedisEventBus
    from toto_redis.storage import RedisStorage

__version__ = "0.1.0"

__all__ = ["RedisEventBus", "RedisStorage", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Toto loads this package in every server (see plugin.py).
    if name == "RedisStorage":
        from toto_redis.storage import RedisStorage

        return RedisStorage
    if name == "RedisEventBus":
        from toto_redis.eventbus import RedisEventBus

        return RedisEventBus
    raise AttributeError(f"module 'toto_redis' has no attribute {name!r}")
