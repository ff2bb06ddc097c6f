"""The toto-otel tests use the machine's Redis (for the Redis event bus and storage) like the toto-redis tests."""

from tests.redis.conftest import prefix, redis_url, run_prefix  # noqa: F401  (fixtures)
