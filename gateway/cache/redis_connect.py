"""One place that turns GATEWAY_REDIS_URL into a client: a server, a Sentinel group or a Cluster.

- `redis://host:6379/0`, `rediss://…`, `unix:///run/redis.sock`: one server, through a
  blocking pool (a burst of misses waits briefly for a connection instead of failing).
- `redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0`: the current master of
  `mymaster`, as the Sentinels name it (and after a failover, the new one).
- `redis+cluster://node1:6379`: a Redis Cluster. Keys that one script touches share a hash
  tag (`{node}`), so every script runs on one slot.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}


def connect(url: str, *, max_connections: int = 32) -> Any:
    """A redis.asyncio client for `url`; `aclose()` releases everything it opened."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme.endswith("+sentinel"):
        hosts, _, path = rest.partition("/")
        service, _, db = path.partition("/")
        if not service:
            raise ValueError("a sentinel URL names the service: redis+sentinel://host:26379/name")
        sentinels = [_host_port(item, 26379) for item in hosts.split(",") if item]
        sentinel = Sentinel(sentinels, sentinel_kwargs=dict(_TIMEOUTS), **_TIMEOUTS)
        return sentinel.master_for(service, db=int(db or 0), **_TIMEOUTS)
    if scheme.endswith("+cluster"):
        plain = scheme.removesuffix("+cluster") + "://" + rest
        return RedisCluster.from_url(plain, **_TIMEOUTS)
    # After Redis restarts, every pooled connection is dead but looks open; without one
    # immediate retry on a fresh connection, each of them fails one call in turn and the
    # index flaps between "unavailable" and "reachable" for a while.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        **_TIMEOUTS,
    )
    return aioredis.Redis.from_pool(pool)


def _host_port(item: str, default: int) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else (item, default)
