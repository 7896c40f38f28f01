"""ffmpeg and dash.js play DASH through the gateway: templates, byte ranges and redirects."""

import re

import pytest

from tests.support.players import chromium_available, play_in_browser, remux

pytestmark = pytest.mark.e2e

MPDS = {
    "template-number": "/dash/manifest.mpd",
    "template-timeline": "/dash-tl/manifest.mpd",
    "segment-list-ranges": "/dash-sb/manifest.mpd",
    "segment-base-index": "/dash-sb/ondemand.mpd",
}


def media_requests(origin) -> list[str]:
    """Media the origin had and served; ffmpeg also probes one segment past the end (a 404)."""
    return [
        f"{r.path_qs} {r.headers.get('Range', '')}".strip()
        for r in origin.requests
        if not re.search(r"\.mpd(\?|$)", r.path_qs) and (origin.root / r.path_qs[1:]).is_file()
    ]


@pytest.mark.parametrize("kind", sorted(MPDS))
async def test_ffmpeg_plays_dash_identically_and_replays_from_cache(
    kind, make_gateway, make_index, origin, tmp_path
):
    gw = await make_gateway(index=make_index(10**9))
    direct = await remux(origin.base_url + MPDS[kind], tmp_path / "direct.ts")
    origin.clear()
    through = await remux(gw.mint(origin.base_url + MPDS[kind]), tmp_path / "gateway.ts")
    fetched = media_requests(origin)
    assert fetched and len(fetched) == len(set(fetched)), fetched
    assert through == direct
    origin.clear()
    assert await remux(gw.mint(origin.base_url + MPDS[kind]), tmp_path / "again.ts") == direct
    assert media_requests(origin) == []


async def test_a_redirected_mpd_plays_from_its_new_location(make_gateway, origin, tmp_path):
    gw = await make_gateway()
    origin.behave("/old/place.mpd", redirect="/dash/manifest.mpd")
    direct = await remux(origin.base_url + "/dash/manifest.mpd", tmp_path / "direct.ts")
    assert await remux(gw.mint(origin.base_url + "/old/place.mpd"), tmp_path / "moved.ts") == direct


needs_chromium = pytest.mark.skipif(
    not chromium_available(), reason="chromium or the page's node_modules missing"
)


@needs_chromium
@pytest.mark.parametrize("kind", sorted(MPDS))
async def test_dash_js_plays_through_the_gateway(kind, make_gateway, origin):
    gw = await make_gateway()
    run = await play_in_browser(
        gw.mint(origin.base_url + MPDS[kind]), engine="dash.js", seconds=2.5
    )
    assert run.ok, run.errors or run.log[-3000:]


@needs_chromium
async def test_dash_js_plays_across_periods_with_base_urls_at_three_levels(make_gateway, origin):
    """MPD-level `../` leaves the granted directory (rewritten); Period and AdaptationSet
    BaseURLs stay relative under it; playback runs past the first Period's 4 s."""
    gw = await make_gateway()
    url = gw.mint(origin.base_url + "/dash-mp/manifest.mpd")
    run = await play_in_browser(url, engine="dash.js", seconds=5.0)
    assert run.ok, run.errors or run.log[-3000:]
    assert origin.count("/dash/chunk-0-00001.m4s") == 1  # both Periods share the cached segment
