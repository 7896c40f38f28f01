"""A real gateway on a loopback socket, with either cache index, for any test to start."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from gateway.access_log import access_logging
from gateway.app import GATEWAY, Gateway, create_app
from gateway.cache.index import CacheIndex, MemoryIndex, RedisIndex
from gateway.cache.segments import SegmentCache
from gateway.lane_connection import GatewayRunner
from gateway.settings import Settings
from gateway.signing import Headers


@dataclass
class RunningGateway:
    base_url: str
    app: web.Application
    settings: Settings
    runner: web.AppRunner | None = None

    @property
    def state(self) -> Gateway:
        return self.app[GATEWAY]

    def mint(self, upstream_url: str, headers: Headers = (), ttl: float | None = None) -> str:
        """A gateway URL for `upstream_url`, on the socket this gateway really listens on."""
        path = self.state.links.mint(upstream_url, headers, ttl)[
            len(self.state.links.public_base) :
        ]
        return self.base_url + path

    def mint_as_hls(self, source_url: str, headers: Headers = ()) -> str:
        """A gateway URL serving the MP4 or MPD at `source_url` as HLS."""
        path = self.state.links.mint_as_hls(source_url, headers)[
            len(self.state.links.public_base) :
        ]
        return self.base_url + path


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture(params=["embedded", "redis"])
def index_kind(request) -> str:
    return request.param


@pytest.fixture
async def make_index(index_kind: str, redis_url: str) -> AsyncIterator[Callable[[int], CacheIndex]]:
    """Builds the index under test: the embedded one, or a real Redis with its own key prefix."""
    built: list[RedisIndex] = []

    def build(max_bytes: int) -> CacheIndex:
        if index_kind == "redis":
            index = RedisIndex(redis_url, max_bytes, prefix=f"test-{uuid.uuid4().hex}")
            built.append(index)
            return index
        return MemoryIndex(max_bytes)

    yield build
    for index in built:
        await index.clear()
        await index.close()


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    runners: list[web.AppRunner] = []

    async def start(
        index: CacheIndex | None = None,
        *,
        fast_lane: bool = True,
        access_log: str = "off",
        runner_options: dict[str, object] | None = None,
        **overrides: object,
    ) -> RunningGateway:
        """`fast_lane=False` serves through aiohttp's own runner only (the reference);
        `runner_options` go to the runner (e.g. `keepalive_timeout`)."""
        values: dict[str, object] = {
            "cache_dir": tmp_path / f"cache-{len(runners)}",
            "secret": "test-secret-0123456789abcdef",
            "allow_private_upstreams": True,
            "upstream_read_timeout": 5.0,
        }
        values.update(overrides)
        settings = Settings(**values)  # type: ignore[arg-type]
        app = create_app(settings, index=index)
        runner_class = GatewayRunner if fast_lane else web.AppRunner
        options = {**access_logging(access_log), **(runner_options or {})}
        runner = runner_class(app, **options)  # type: ignore[arg-type]
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return RunningGateway(f"http://127.0.0.1:{port}", app, settings, runner)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


def fill_temps(cache: SegmentCache) -> list[Path]:
    """The cache's temp files, each one a fill's."""
    return list(cache.store.tmp.iterdir())
