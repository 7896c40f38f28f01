"""Players follow a live stream through the gateway without stalling."""

import pytest

from tests.support.players import chromium_available, ffmpeg, ffprobe, play_in_browser

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not chromium_available(), reason="chromium or the page's node_modules missing")
async def test_hls_js_plays_a_live_stream_for_twenty_seconds_without_stalling(
    make_gateway, origin, live_encoder
):
    gw = await make_gateway()
    run = await play_in_browser(
        gw.mint(origin.base_url + "/live/index.m3u8"), engine="hls.js", seconds=20, timeout=60
    )
    assert run.ok, run.errors or run.log[-3000:]
    assert run.advanced >= 20
    assert run.stalls == 0, run.log[-3000:]


async def test_ffmpeg_follows_a_live_stream_through_the_gateway(
    make_gateway, origin, live_encoder, tmp_path
):
    gw = await make_gateway()
    out = tmp_path / "live.ts"
    live = gw.mint(origin.base_url + "/live/index.m3u8")
    await ffmpeg("-y", "-i", live, "-t", "5", "-c", "copy", "-f", "mpegts", str(out), seconds=60)
    duration = await ffprobe("-show_entries", "format=duration", "-of", "csv=p=0", str(out))
    assert float(duration) >= 4.5
