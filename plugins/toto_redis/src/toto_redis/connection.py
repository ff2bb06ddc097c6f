"""What the storage and the event bus share: option values, the Redis URL forms, client
construction and the mapping of connection faults to ``StorageUnavailable``.

Three deployments of Redis are reached through one URL option:

- ``redis://[[user]:password@]host:port/db`` (also ``rediss://`` and ``unix://``): one Redis;
- ``redis+sentinel://[[user:]password@]host:port[,host:port...]/service_name[/db]``: the
  primary that the Sentinels at those addresses name for ``service_name``. The client asks
  them where the primary is whenever it connects, so after a failover it follows the new
  primary by itself; a password is the data nodes' (``?sentinel_password=`` gives the
  Sentinels' own, when they have one);
- ``redis+cluster://[[user:]password@]host:port[,host:port...]``: a Redis Cluster, found
  from any of those nodes; the client follows slot moves and failovers.

``rediss+sentinel`` and ``rediss+cluster`` speak TLS to the data nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as redis_asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from toto.exceptions import PluginError, StorageUnavailable

from toto_redis.defaults import DEFAULT_PREFIX, DEFAULT_TIMEOUT, DEFAULT_URL

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "DEFAULT_URL"]

#: A client of any of the three deployments; both speak the same commands.
Client = redis_asyncio.Redis | RedisCluster

#: Errors that mean "Redis cannot be reached right now", as opposed to a bug or a bad command.
#: Sentinel's "no primary known" (``MasterNotFoundError``) and a replica still loading
#: (``BusyLoadingError``) are ``ConnectionError``s; a Cluster mid-failover answers
#: CLUSTERDOWN or TRYAGAIN, or has no node left for a slot, or none that answers.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,  # a replica promoted away from us: writes fail until the client reconnects
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    OSError,
    asyncio.TimeoutError,
)

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
EXAMPLES = (
    "redis://127.0.0.1:6379/0, redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0 "
    "or redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
)


@dataclass(frozen=True)
class RedisAddress:
    """A parsed ``redis+sentinel://`` or ``redis+cluster://`` URL (plain URLs go to redis-py as they are)."""

    kind: str  # "sentinel" or "cluster"
    hosts: tuple[tuple[str, int], ...]
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False


def url_kind(url: str | None) -> str | None:
    """``"single"``, ``"sentinel"`` or ``"cluster"`` for a Redis URL; None for anything else."""
    if not url:
        return None
    scheme = str(url).split("://", 1)[0]
    if scheme not in SCHEMES or "://" not in str(url):
        return None
    return scheme.split("+", 1)[1] if "+" in scheme else "single"


def is_redis_url(url: str | None) -> bool:
    return url_kind(url) is not None


def redact(url: str) -> str:
    """``url`` without its secrets, for logs and error messages (``password@`` too, which
    these URL forms allow, and the ``sentinel_password`` query)."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    rest = rest.split("?", 1)[0] + ("?***" if "?" in rest else "")
    if "@" not in rest.split("/", 1)[0]:
        return f"{scheme}://{rest}"
    credentials, hosts = rest.split("@", 1)
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user + ':' if user else ''}***@{hosts}"


def _bad(url: str, why: str) -> PluginError:
    return PluginError(f"invalid Redis URL {redact(url)!r}: {why}; use e.g. {EXAMPLES}")


def parse_address(url: str) -> RedisAddress:
    """Parse a Sentinel or Cluster URL; ``PluginError`` saying what is wrong with it."""
    kind = url_kind(url)
    if kind not in ("sentinel", "cluster"):
        raise _bad(url, "not a redis+sentinel:// or redis+cluster:// URL")
    scheme, rest = url.split("://", 1)
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        if ":" in credentials:
            user, secret = credentials.split(":", 1)
            username, password = unquote(user) or None, unquote(secret)
        else:
            password = unquote(credentials)
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = tuple(_host_port(url, part, default_port) for part in netloc.split(","))
    query = parse_qs(query_text)
    unknown = sorted(set(query) - {"sentinel_password"})
    if unknown:
        raise _bad(url, f"unknown parameter {unknown[0]!r} (only sentinel_password is understood)")
    sentinel_password = query["sentinel_password"][-1] if "sentinel_password" in query else None
    parts = [p for p in path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not parts or len(parts) > 2:
            raise _bad(url, "a Sentinel URL names the service after the hosts: /service_name or /service_name/db")
        service = unquote(parts[0])
        if len(parts) == 2:
            db = _number(url, parts[1], "database number")
    else:
        if parts:
            raise _bad(url, "a Cluster URL has no path (a Redis Cluster has only database 0)")
        if sentinel_password is not None:
            raise _bad(url, "sentinel_password is for redis+sentinel:// URLs")
    return RedisAddress(
        kind,
        hosts,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=scheme.startswith("rediss"),
    )


def _host_port(url: str, text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise _bad(url, f"{text!r} is not host:port")
    return host, _number(url, port, "port") if port else default_port


def _number(url: str, text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _bad(url, f"{what} {text!r} is not a number") from None
    if value < 0:
        raise _bad(url, f"{what} {text!r} is negative")
    return value


def normalize_prefix(prefix: str) -> str:
    """End a prefix with ``:`` so that ``app`` and ``app2`` can never see each other's keys."""
    return prefix if prefix.endswith(":") else prefix + ":"


def make_client(
    url: str, timeout: float, *, blocking_seconds: float = 0.0, retries: int = 1, client_name: str | None = None
) -> Any:
    """A client of the Redis that ``url`` names, which fails fast and heals by itself.

    Connect and read timeouts are ``timeout`` (plus ``blocking_seconds`` for clients that
    issue blocking commands such as BLPOP), so a Redis that hangs is noticed within it.
    A dropped connection (Redis restarted, a proxy cut it, a primary that failed over) is
    retried ``retries`` times on a new connection, which makes the first request after a
    restart succeed; a timeout is not retried, so a request never waits much longer than
    ``timeout``. Idle pooled connections are checked with PING before reuse.

    Typed ``Any``: a ``redis.asyncio.Redis`` for one Redis or a Sentinel's primary, a
    ``RedisCluster`` for a Cluster; both answer the commands Toto sends. Close it with
    ``close_client``. ``client_name`` names its connections in Redis's CLIENT LIST.
    """
    retry = Retry(
        ExponentialBackoff(cap=0.2, base=0.05) if retries else NoBackoff(),
        retries,
        supported_errors=(RedisConnectionError,),
    )
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout + blocking_seconds,
        "socket_keepalive": True,
        "retry": retry,
        "decode_responses": False,
        "client_name": client_name,
    }
    kind = url_kind(url)
    if kind == "single":
        try:
            return redis_asyncio.Redis.from_url(url, health_check_interval=30, **common)
        except ValueError as error:
            raise _bad(url, str(error)) from error
    address = parse_address(url)
    credentials: dict[str, Any] = {"username": address.username, "password": address.password}
    if address.kind == "sentinel":
        # Ask each Sentinel for at most its share of the timeout, so finding the primary
        # when Sentinels are down still fits in ``timeout``.
        ask = max(0.2, timeout / len(address.hosts))
        sentinels = Sentinel(
            list(address.hosts),
            sentinel_kwargs={
                "socket_connect_timeout": ask,
                "socket_timeout": ask,
                "password": address.sentinel_password,
            },
        )
        return sentinels.master_for(
            address.service,
            redis_class=redis_asyncio.Redis,
            db=address.db,
            ssl=address.tls,
            health_check_interval=30,
            **credentials,
            **common,
        )
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.hosts],
        ssl=address.tls,
        # Slots without a primary for a moment fail alone (SlotNotCoveredError, 1013), not the client.
        require_full_coverage=False,
        **credentials,
        **common,
    )


async def client_of_slot(
    url: str, key: str, timeout: float, *, retries: int = 0, client_name: str | None = None
) -> Any:
    """A client of the one node that serves ``key`` as a primary now: for a Cluster URL,
    found from the cluster's slot map (sharded pub/sub subscribes there, not through the
    cluster client); for any other URL, ``make_client(url)``."""
    if url_kind(url) != "cluster":
        return make_client(url, timeout, retries=retries, client_name=client_name)
    cluster = make_client(url, timeout, retries=retries)
    try:
        await cluster.initialize()
        node = cluster.get_node_from_key(key)
    finally:
        await cluster.aclose()
    address = parse_address(url)
    return redis_asyncio.Redis(
        host=node.host,
        port=node.port,
        username=address.username,
        password=address.password,
        ssl=address.tls,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), retries),
        decode_responses=False,
        client_name=client_name,
    )


async def close_client(client: Any) -> None:
    """Close a client of ``make_client`` and, for Sentinel, its connections to the Sentinels."""
    await client.aclose()
    sentinels = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if sentinels is not None:
        await sentinels.aclose()


#: Refusals that say "not now" rather than "never": a primary configured with
#: ``min-replicas-to-write`` that has too few replicas (NOREPLICAS), a replica cut from its
#: primary that serves no stale data (MASTERDOWN).
RETRYABLE_REFUSALS = ("NOREPLICAS", "MASTERDOWN")


@contextlib.asynccontextmanager
async def unavailable_on_fault(what: str) -> AsyncIterator[None]:
    """Turn "cannot reach Redis" into ``StorageUnavailable`` (answered 1013/503)."""
    try:
        yield
    except UNREACHABLE_ERRORS as error:
        raise StorageUnavailable(f"{what} is unavailable ({type(error).__name__}); try again shortly.") from error
    except ResponseError as error:
        # A pipeline's error names the command first: "Command # 1 (...) of pipeline caused error: NOREPLICAS ..."
        if not str(error).split("caused error: ", 1)[-1].startswith(RETRYABLE_REFUSALS):
            raise
        raise StorageUnavailable(f"{what} refused a write for now ({error}); try again shortly.") from error
