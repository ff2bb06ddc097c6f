"""Redis storage and event bus for Toto: ``--database=redis`` and ``--event_bus=redis``."""

from toto_redis.eventbus import RedisEventBus
from toto_redis.storage import RedisStorage

__version__ = "0.1.0"

__all__ = ["RedisEventBus", "RedisStorage", "__version__"]
