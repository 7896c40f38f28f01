"""ffmpeg, as an HLS client, plays every kind of stream through the gateway."""

import re

import pytest

from tests.support.players import remux

pytestmark = pytest.mark.e2e

PLAYLISTS = {
    "ts": "/ts/index.m3u8",
    "fmp4": "/fmp4/index.m3u8",
    "aes": "/aes/index.m3u8",
    "master": "/master/master.m3u8",
}


def media_requests(origin) -> list[str]:
    return [r.path_qs for r in origin.requests if not re.search(r"\.m3u8(\?|$)", r.path_qs)]


@pytest.mark.parametrize("kind", sorted(PLAYLISTS))
async def test_ffmpeg_plays_through_the_gateway_identically_and_replays_from_cache(
    kind, make_gateway, make_index, origin, tmp_path
):
    gw = await make_gateway(index=make_index(10**9))
    path = PLAYLISTS[kind]
    await remux(origin.base_url + path, tmp_path / "direct.ts")
    origin.clear()

    await remux(gw.mint(origin.base_url + path), tmp_path / "gateway.ts")
    fetched = media_requests(origin)
    assert fetched, "the player fetched no segments through the gateway"
    assert len(fetched) == len(set(fetched)), "a segment was fetched upstream twice"
    assert (tmp_path / "gateway.ts").read_bytes() == (tmp_path / "direct.ts").read_bytes()

    origin.clear()
    await remux(gw.mint(origin.base_url + path), tmp_path / "replay.ts")
    assert media_requests(origin) == []
    assert (tmp_path / "replay.ts").read_bytes() == (tmp_path / "direct.ts").read_bytes()


async def test_every_segment_served_equals_the_origin_file(make_gateway, origin, media):
    """Walk the rewritten playlists like a player and compare bytes with the origin's files."""
    import aiohttp

    from playlists.urls import resolve

    gw = await make_gateway()
    checked = 0
    async with aiohttp.ClientSession() as session:
        for path in PLAYLISTS.values():
            pending = [(gw.mint(origin.base_url + path), path)]
            while pending:
                url, upstream_path = pending.pop()
                async with session.get(url) as response:
                    body = await response.read()
                if body.startswith(b"#EXTM3U"):
                    for line in body.decode().splitlines():
                        found = (
                            [line]
                            if line and not line.startswith("#")
                            else re.findall(r'URI="([^"]+)"', line)
                        )
                        pending += [(resolve(url, u), resolve(upstream_path, u)) for u in found]
                    continue
                assert body == (media.root / upstream_path.lstrip("/")).read_bytes(), upstream_path
                checked += 1
    assert checked >= 12
