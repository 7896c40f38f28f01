"""Real players play through the gateway, unmodified: VLC as a TV would, hls.js in a browser.

The browser page is served from another origin than the gateway, so these runs also prove
that CORS lets a web player fetch playlists, keys and segments.
"""

from __future__ import annotations

import re

import pytest

from tests.support.players import (
    chromium_available,
    play_in_browser,
    play_with_vlc,
    vlc_available,
)

pytestmark = pytest.mark.e2e

needs_vlc = pytest.mark.skipif(not vlc_available(), reason="cvlc (or its 'player' user) missing")
needs_chromium = pytest.mark.skipif(
    not chromium_available(), reason="chromium or the player page's node_modules missing"
)


def segment_requests(origin) -> list[str]:
    return [r.path_qs for r in origin.requests if not re.search(r"\.m3u8(\?|$)", r.path_qs)]


@needs_vlc
@pytest.mark.parametrize("path", ["/ts/index.m3u8", "/master/master.m3u8", "/aes/index.m3u8"])
async def test_vlc_plays_through_the_gateway(make_gateway, origin, path):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + path)
    run = await play_with_vlc(url)
    if not run.ok:
        # VLC with dummy outputs occasionally trips over its own clock on a loaded machine;
        # a second play must then succeed (and is served from the cache).
        first = run.errors
        run = await play_with_vlc(url)
        assert run.ok, (first, run.errors or run.log[-2000:])
    assert segment_requests(origin), "VLC played without fetching segments through the gateway"


@needs_chromium
@pytest.mark.parametrize("path", ["/master/master.m3u8", "/fmp4/index.m3u8", "/aes/index.m3u8"])
async def test_hls_js_plays_through_the_gateway(make_gateway, origin, path):
    gw = await make_gateway()
    run = await play_in_browser(gw.mint(origin.base_url + path), engine="hls.js", seconds=2.5)
    assert run.ok, run.errors or run.log[-2000:]
    assert run.advanced >= 2.5
