"""Session-wide real parts: media made with ffmpeg, a Redis, and a recording origin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop

from tests.support.live import LiveEncoder, LowLatencyOrigin, make_parts
from tests.support.media import Media, make_media
from tests.support.origin import Origin
from tests.support.redis_server import redis_for_tests


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The gateway runs on uvloop where it is installed, and on asyncio's own loop where not,
    and their transports differ (uvloop queues a buffer by reference, asyncio copies it):
    the gateway's tests run on both. The players' end-to-end tests run on asyncio's."""
    if "gateway" in item.path.parts:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_for_tests(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def live_encoder(media: Media) -> Iterator[LiveEncoder]:
    """ffmpeg packaging a real-time encode into `<media root>/live/`, for the whole session."""
    encoder = LiveEncoder(media.root / "live")
    encoder.start()
    yield encoder
    encoder.stop()


@pytest.fixture(scope="session")
def ll_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    return make_parts(tmp_path_factory.mktemp("ll-parts"))


@pytest.fixture
async def ll_origin(ll_parts: tuple[bytes, list[bytes]]) -> AsyncIterator[LowLatencyOrigin]:
    server = LowLatencyOrigin(*ll_parts)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def origin(media: Media) -> AsyncIterator[Origin]:
    server = Origin(media.root)
    await server.start()
    yield server
    await server.close()


# Gateway fixtures live in a module of their own; importing them here shares them with every
# test directory.
from tests.support.gateway import index_kind, make_gateway, make_index  # noqa: E402, F401
