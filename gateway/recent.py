"""Small bounded maps for the hot path: a plain dict in insertion order, oldest first."""

from __future__ import annotations

from typing import TypeVar

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
