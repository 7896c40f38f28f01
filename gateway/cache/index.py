"""The cache index: key → entry, least-recently-used order and the byte budget.

Two backends behind one interface: `MemoryIndex` (embedded, one process, rebuilt from the
cache dir on start) and `RedisIndex` (shared by every worker and node that uses the same
Redis). Both evict least-recently-used entries first until the total fits the budget, and
return what they evicted so the caller deletes the files.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol

from redis.exceptions import RedisError

from gateway.cache.entry import Entry, Row, size_of_row
from gateway.cache.redis_connect import connect

log = logging.getLogger("gateway.cache")


class IndexUnavailable(Exception):
    """The index cannot be reached; callers degrade to pass-through."""


class CacheIndex(Protocol):
    max_bytes: int

    async def get(self, name: str) -> Entry | None: ...

    async def put(self, entry: Entry) -> list[str]:
        """Add or replace `entry`; return the storage names evicted to stay within budget."""
        ...

    async def touch(self, name: str) -> None: ...

    async def remove(self, name: str) -> None: ...

    async def total_bytes(self) -> int: ...

    async def names(self) -> list[str]:
        """Every indexed name, least recently used first."""
        ...

    async def close(self) -> None: ...


class MemoryIndex:
    """An in-process LRU; the default when no Redis is configured.

    Each entry is held as a plain tuple of its fields (`Entry.as_row`), which the garbage
    collector stops tracking: a cache of tens of thousands of objects then adds nothing to
    the worker's full collections (bench/HISTORY.md)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Row] = OrderedDict()
        self._total = 0

    async def get(self, name: str) -> Entry | None:
        row = self._entries.get(name)
        return None if row is None else Entry.from_row(row)

    async def put(self, entry: Entry) -> list[str]:
        old = self._entries.pop(entry.name, None)
        if old is not None:
            self._total -= size_of_row(old)
        self._entries[entry.name] = entry.as_row()
        self._total += entry.size
        evicted: list[str] = []
        while self._total > self.max_bytes and self._entries:
            name, victim = self._entries.popitem(last=False)
            self._total -= size_of_row(victim)
            evicted.append(name)
        return evicted

    async def touch(self, name: str) -> None:
        if name in self._entries:
            self._entries.move_to_end(name)

    async def remove(self, name: str) -> None:
        row = self._entries.pop(name, None)
        if row is not None:
            self._total -= size_of_row(row)

    async def total_bytes(self) -> int:
        return self._total

    async def names(self) -> list[str]:
        return list(self._entries)

    async def close(self) -> None:
        return None


# Atomic put-and-evict: with many writers, bytes are neither lost nor double counted.
_PUT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('DECRBY', KEYS[3], cjson.decode(old)['size'])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local total = redis.call('INCRBY', KEYS[3], ARGV[3])
local budget = tonumber(ARGV[5])
local evicted = {}
while total > budget do
  local victims = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #victims == 0 then break end
  local victim = victims[1]
  local data = redis.call('HGET', KEYS[1], victim)
  redis.call('HDEL', KEYS[1], victim)
  redis.call('ZREM', KEYS[2], victim)
  if data then
    total = redis.call('DECRBY', KEYS[3], cjson.decode(data)['size'])
  end
  table.insert(evicted, victim)
end
return evicted
"""

_REMOVE = """
local data = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if data then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DECRBY', KEYS[3], cjson.decode(data)['size'])
end
return data and 1 or 0
"""


class RedisIndex:
    """The shared index: a hash of entries, a sorted set by last use, and a byte counter.

    Keys share one hash tag so that the scripts stay valid on Redis Cluster.
    """

    def __init__(
        self, url: str, max_bytes: int, *, prefix: str = "hlsgw", node: str = "default"
    ) -> None:
        self.max_bytes = max_bytes
        self._redis = connect(url)
        tag = f"{prefix}:{{{node}}}"
        self._keys = [f"{tag}:entries", f"{tag}:lru", f"{tag}:bytes"]
        self._put = self._redis.register_script(_PUT)
        self._remove = self._redis.register_script(_REMOVE)

    @property
    def entries_key(self) -> str:
        """The hash of committed entries, by name."""
        return self._keys[0]

    async def get(self, name: str) -> Entry | None:
        raw = await self._call(self._redis.hget(self._keys[0], name))
        return Entry.from_json(raw) if raw else None

    async def put(self, entry: Entry) -> list[str]:
        evicted = await self._call(
            self._put(
                keys=self._keys,
                args=[entry.name, entry.to_json(), entry.size, time.time(), self.max_bytes],
            )
        )
        return [name.decode() if isinstance(name, bytes) else name for name in evicted]

    async def touch(self, name: str) -> None:
        await self._call(self._redis.zadd(self._keys[1], {name: time.time()}, xx=True))

    async def remove(self, name: str) -> None:
        await self._call(self._remove(keys=self._keys, args=[name]))

    async def total_bytes(self) -> int:
        return int(await self._call(self._redis.get(self._keys[2])) or 0)

    async def names(self) -> list[str]:
        raw = await self._call(self._redis.zrange(self._keys[1], 0, -1))
        return [name.decode() for name in raw]

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def clear(self) -> None:
        await self._call(self._redis.delete(*self._keys))

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, awaitable: object) -> object:
        try:
            return await awaitable  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            raise IndexUnavailable(f"redis: {type(exc).__name__}") from None
