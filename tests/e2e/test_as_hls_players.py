"""Real players open an MP4 file through the gateway as HLS: hls.js in Chromium, VLC."""

import pytest

from tests.support.players import chromium_available, play_in_browser, play_with_vlc, vlc_available

pytestmark = pytest.mark.e2e

LAYOUTS = {"faststart": "/long/faststart.mp4", "moov-last": "/long/moov-last.mp4"}


@pytest.mark.skipif(
    not chromium_available(), reason="Chromium and the player page are not installed"
)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_hls_js_plays_an_mp4_as_hls_across_segment_boundaries(layout, make_gateway, origin):
    gw = await make_gateway()
    run = await play_in_browser(
        gw.mint_as_hls(origin.base_url + LAYOUTS[layout]), engine="hls.js", seconds=9.0
    )
    assert run.ok, run.errors or run.log[-3000:]
    assert run.current_time >= 9.0  # past two 4 s segment boundaries


@pytest.mark.skipif(
    not chromium_available(), reason="Chromium and the player page are not installed"
)
async def test_hls_js_plays_the_fmp4_variant(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint_as_hls(origin.base_url + LAYOUTS["faststart"]).replace("index.m3u8", "fmp4.m3u8")
    run = await play_in_browser(url, engine="hls.js", seconds=5.0)
    assert run.ok, run.errors or run.log[-3000:]


@pytest.mark.skipif(not vlc_available(), reason="VLC is not installed")
async def test_vlc_plays_an_mp4_as_hls(make_gateway, origin):
    gw = await make_gateway()
    run = await play_with_vlc(
        gw.mint_as_hls(origin.base_url + "/progressive.mp4")
    )  # 4 s: VLC plays in real time
    assert run.ok, run.errors or run.log[-3000:]
