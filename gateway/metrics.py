"""Prometheus metrics (prometheus-client), one set per app, summed across workers.

With several workers, `hls-gateway serve` points PROMETHEUS_MULTIPROC_DIR at a directory
under the cache dir before any worker starts, and every worker's `/metrics` answers for all
of them. In one process (and in tests) each app has its own registry.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Counts on the request path are added up here and handed to prometheus-client at most this
# often, and before every scrape: its `inc` takes a lock and checks its labels (three of
# them cost a cached playlist's answer a tenth of its time). With several workers each
# worker's counts reach the shared files within this delay.
FLUSH_SECONDS = 1.0

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Client requests answered.", ["route", "status"], registry=r
        )
        self.cache_results = Counter(
            "gateway_cache_results",
            "Segment and playlist answers by cache state (HIT, MISS, COALESCED, STALE).",
            ["kind", "state"],
            registry=r,
        )
        self.served_bytes = Counter(
            "gateway_served_bytes", "Segment body bytes sent to clients.", ["state"], registry=r
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_seconds",
            "Time from sending an upstream request to its response headers.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_bytes = Counter(
            "gateway_upstream_bytes", "Body bytes received from upstream.", registry=r
        )
        self.fills_in_flight = Gauge(
            "gateway_fills_in_flight",
            "Upstream fills under way.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.evictions = Counter(
            "gateway_cache_evictions", "Objects evicted from the segment cache.", registry=r
        )
        self.cache_bytes = Gauge(
            "gateway_cache_bytes",
            "Bytes in this node's segment cache, as the index counts them.",
            registry=r,
            multiprocess_mode="max",
        )
        self.prefetch_requests = Counter(
            "gateway_prefetch_requests", "Segments fetched ahead of any client.", registry=r
        )
        self.prefetch_bytes = Counter(
            "gateway_prefetch_bytes", "Bytes fetched ahead of any client.", registry=r
        )
        self.prefetch_hits = Counter(
            "gateway_prefetch_hits", "Prefetched segments later asked for.", registry=r
        )
        self.prefetch_wasted_bytes = Counter(
            "gateway_prefetch_wasted_bytes",
            "Prefetched bytes evicted before any client asked for them.",
            registry=r,
        )
        self.fast_answers = Counter(
            "gateway_fast_answers",
            "Requests answered from memory by the connection itself, without aiohttp's stack.",
            registry=r,
        )
        self.lane_waited_answers = Counter(
            "gateway_lane_waited_answers",
            "Requests the connection itself answered after a wait (a lookup, a fill streamed),"
            " without aiohttp's stack.",
            registry=r,
        )
        self.extractions = Counter(
            "gateway_extractions", "yt-dlp page extractions run.", registry=r
        )
        self.gc_pauses = Histogram(
            "gateway_gc_pause_seconds",
            "Garbage collector pauses by generation (2: a full collection).",
            ["generation"],
            buckets=_GC_PAUSE_BUCKETS,
            registry=r,
        )
        self.gc_frozen_objects = Gauge(
            "gateway_gc_frozen_objects",
            "Objects made at start-up that full collections skip (gc.freeze).",
            registry=r,
            multiprocess_mode="max",
        )
        # Filled inside the collector (`gateway.collector.PauseTimer`), where observing a
        # metric could wait on a lock the interrupted code holds; moved over at each flush.
        self._gc_pauses: list[tuple[str, float]] = []
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self._children: dict[tuple[Counter, tuple[str, ...]], Any] = {}
        self._pending: dict[tuple[Counter, tuple[str, ...]], float] = {}

    def count(self, metric: Counter, *labels: str, amount: float = 1.0) -> None:
        """`metric.labels(*labels).inc(amount)` (`metric.inc` without labels), added up
        and handed over within `FLUSH_SECONDS` and before every scrape."""
        key = (metric, labels)
        pending = self._pending
        if not pending and not self._flush_later():
            self._inc(key, amount)  # no event loop to flush from (a command-line tool)
            return
        pending[key] = pending.get(key, 0.0) + amount

    def gc_paused(self, generation: str, seconds: float) -> None:
        """A collection's pause, observed at the next flush (safe inside the collector)."""
        self._gc_pauses.append((generation, seconds))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for key, amount in pending.items():
            self._inc(key, amount)
        pauses, self._gc_pauses = self._gc_pauses, []
        for generation, seconds in pauses:
            self.gc_pauses.labels(generation).observe(seconds)

    def _inc(self, key: tuple[Counter, tuple[str, ...]], amount: float) -> None:
        child = self._children.get(key)
        if child is None:
            metric, labels = key
            child = self._children[key] = metric.labels(*labels) if labels else metric
        child.inc(amount)

    def _flush_later(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_later(FLUSH_SECONDS, self.flush)
        return True

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run `refresh` before each scrape (gauges read from the index)."""
        self._refreshers.append(refresh)

    async def handle(self, _request: web.Request) -> web.Response:
        self.flush()
        for refresh in self._refreshers:
            await refresh()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


_ROUTES = frozenset({"p", "s", "watch", "resolve", "api", "admin", "metrics"})


def route_of(path: str) -> str:
    """A bounded label: the route family, never the token or file name."""
    first = path[1:].partition("/")[0]
    return first if first in _ROUTES else "other"
