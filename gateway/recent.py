"""Small bounded maps for the hot path: a plain dict in insertion order, oldest first."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def put_newest(mapping: dict[K, V], key: K, value: V, limit: int) -> None:
    """Insert `key` as the newest entry, dropping the oldest beyond `limit` entries.

    What an LRU would keep, short of moving entries on every lookup: those lookups are
    most of the cost of a cached answer, and the bookkeeping is not worth it there.
    """
    mapping.pop(key, None)
    while len(mapping) >= limit:
        del mapping[next(iter(mapping))]
    mapping[key] = value


class LapsingMap(Generic[K, V]):
    """At most `limit` entries, each valid for `ttl` seconds after it was put.

    A lookup is a dict lookup and a clock read: cachetools' TTLCache, which this replaced on
    the hit path, enters a timer context and walks its expiry list on every get (about 1 µs,
    a seventh of a RAM hit's Python). A lapsed entry goes when it is next looked up, or as
    the oldest when the map is full.
    """

    def __init__(self, limit: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: dict[K, tuple[V, float]] = {}
        self._limit = limit
        self._ttl = ttl
        self._clock = clock

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._items[key]
            return None
        return item[0]

    def __setitem__(self, key: K, value: V) -> None:
        put_newest(self._items, key, (value, self._clock() + self._ttl), self._limit)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
