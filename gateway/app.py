"""The application factory: wires settings into the one client, cache, fetcher and routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway import protocol_errors
from gateway.admin import AdminApi
from gateway.api import STATIC_DIR, LinksApi, Readiness, healthz, index_page
from gateway.as_hls import AsHlsHandler
from gateway.cache.index import CacheIndex, IndexUnavailable, RedisIndex
from gateway.cache.segments import SegmentCache
from gateway.cache.shared_flight import FlightLocks
from gateway.dash_hls import DashAsHls
from gateway.fast_lane import FastLane
from gateway.fetcher import Fetcher
from gateway.lane_connection import FAST_LANE, LANE_WAITS
from gateway.lane_waits import WaitedAnswers
from gateway.links import AS_HLS_PREFIX, Links
from gateway.manifests import ManifestService
from gateway.metrics import Metrics
from gateway.middleware import FrontDoor
from gateway.prefetch import Prefetcher
from gateway.proxy import ProxyHandler
from gateway.resolver import Resolver
from gateway.secret import load_secrets
from gateway.segment_sources import SegmentSources
from gateway.settings import Settings
from gateway.signing import Signer
from gateway.upstream import UpstreamClient
from gateway.watch import Watch


@dataclass(slots=True)
class Gateway:
    """Everything a running gateway holds; one per process."""

    settings: Settings
    links: Links
    client: UpstreamClient
    cache: SegmentCache
    fetcher: Fetcher
    manifests: ManifestService
    prefetcher: Prefetcher
    metrics: Metrics
    resolver: Resolver
    watch: Watch


GATEWAY = web.AppKey("gateway", Gateway)


def build_links(settings: Settings) -> Links:
    secret, previous = load_secrets(settings)
    return Links(Signer(secret, previous), settings.base_url)


def create_app(settings: Settings, *, index: CacheIndex | None = None) -> web.Application:
    """`index` replaces the configured cache index (tests pass one with its own key prefix)."""
    protocol_errors.install()
    links = build_links(settings)
    client = UpstreamClient(settings)
    cache = SegmentCache(settings, index)
    metrics = Metrics()
    # Claims check the index in the same round trip when it is the one these settings name
    # (an index handed in may live under another prefix).
    checked = cache.index if index is None and isinstance(cache.index, RedisIndex) else None
    locks = (
        FlightLocks(
            settings.redis_url,
            prefix=settings.redis_prefix,
            node=settings.node_name,
            entries_key=checked.entries_key if checked is not None else None,
        )
        if settings.redis_url
        else None
    )
    fetcher = Fetcher(settings, client, cache, metrics, locks)
    prefetcher = Prefetcher(settings, fetcher, cache, metrics)
    cache.on_evict.append(prefetcher.evicted)
    cache.on_evict.append(lambda names: metrics.evictions.inc(len(names)))

    async def read_cache_bytes() -> None:
        with contextlib.suppress(IndexUnavailable):
            metrics.cache_bytes.set(await cache.index.total_bytes())

    metrics.on_scrape(read_cache_bytes)
    manifests = ManifestService(settings, links)
    resolver = Resolver(settings)
    watch = Watch(settings, links, resolver, fetcher, manifests)
    sources = SegmentSources(settings, client, fetcher, cache)
    gateway = Gateway(
        settings,
        links,
        client,
        cache,
        fetcher,
        manifests,
        prefetcher,
        metrics,
        resolver,
        watch,
    )

    front = FrontDoor(settings, metrics)
    app = web.Application(
        middlewares=[front.middleware],
        client_max_size=64 * 1024,
        handler_args={"max_field_size": 16384, "max_line_size": 16384},
    )
    app[GATEWAY] = gateway
    app.on_response_prepare.append(front.on_prepare)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await client.start()
        await cache.start()
        yield
        await prefetcher.close()
        await resolver.close()
        await sources.close()
        await fetcher.close()
        await client.close()
        await cache.close()
        if locks is not None:
            await locks.close()
        metrics.flush()  # the last second's counts, for the other workers' scrapes

    app.cleanup_ctx.append(lifecycle)

    proxy = ProxyHandler(
        links.signer,
        cache,
        fetcher,
        manifests,
        prefetcher,
        watch.recover,
        accel_prefix=settings.accel_redirect_prefix,
        metrics=metrics,
    )
    lane = FastLane(proxy.answer_now, front)
    app[FAST_LANE] = lane
    app[LANE_WAITS] = WaitedAnswers(proxy, lane)
    api = LinksApi(links, settings.api_key)
    app.router.add_get("/p/{tail:.*}", proxy.handle)
    dash_as_hls = DashAsHls(fetcher, links, settings)
    as_hls = AsHlsHandler(settings, links.signer, sources, proxy, dash_as_hls)
    app.router.add_get(AS_HLS_PREFIX + "{tail:.*}", as_hls.handle)
    app.router.add_route("OPTIONS", "/p/{tail:.*}", proxy.handle)
    app.router.add_post("/api/links", api.create)
    admin = AdminApi(settings.admin_token, cache, fetcher, settings.node_name)
    app.router.add_get("/admin/cache", admin.stats)
    app.router.add_post("/admin/cache/purge", admin.purge)
    app.router.add_post("/admin/cache/warm", admin.warm)
    if settings.web_page:
        app.router.add_get("/", index_page)
        app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", Readiness(cache).handle)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/resolve", watch.resolve)
    app.router.add_get("/watch/{token}/{name}", watch.handle)
    return app
