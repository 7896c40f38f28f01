"""A static DASH MPD opened through the gateway as HLS: hls.js in Chromium and ffmpeg play it
from the MPD's own segments, fetched through the ordinary `/p/` proxy and its cache."""

import re
from collections import Counter

import aiohttp
import m3u8
import pytest

from playlists.urls import resolve
from tests.support.players import chromium_available, ffmpeg, play_in_browser

pytestmark = pytest.mark.e2e

# ffmpeg's own DASH output: one template-addressed, one single-file SegmentBase (sidx).
MPDS = {"template": "/dash/manifest.mpd", "segment-base": "/dash-sb/ondemand.mpd"}
FILES = {
    "template": re.compile(r"^/dash/(init-[01]|chunk-[01]-\d{5})\.m4s$"),
    "segment-base": re.compile(r"^/dash-sb/track-[01]\.mp4$"),
}
VIDEO_FRAMES = 4 * 25  # 4 s of testsrc2 at 25 fps


async def decoded_frames(url: str) -> Counter:
    """Frames ffmpeg decodes from `url`, per output stream (0: video, 1: audio)."""
    out, err = await ffmpeg("-i", url, "-map", "0:v:0", "-map", "0:a:0", "-f", "framecrc", "-")
    assert not err.strip(), err.decode()[-2000:]
    return Counter(int(line.split(b",")[0]) for line in out.splitlines() if line[:1].isdigit())


def origin_requests(origin) -> list[str]:
    return [f"{r.path_qs} {r.headers.get('Range', '')}".strip() for r in origin.requests]


@pytest.mark.parametrize("kind", sorted(MPDS))
async def test_ffmpeg_decodes_every_frame_of_a_dash_served_as_hls(kind, make_gateway, origin):
    gw = await make_gateway()
    frames = await decoded_frames(gw.mint_as_hls(origin.base_url + MPDS[kind]))
    assert frames[0] == VIDEO_FRAMES
    assert frames[1] >= 4 * 48000 // 1024 - 2  # AAC frames of 1024 samples, give or take priming
    seen = origin_requests(origin)
    media = [r for r in seen if not r.startswith(MPDS[kind])]
    assert media and all(FILES[kind].match(r.split(" ")[0]) for r in media), seen
    assert len(media) == len(set(media)), seen  # each segment or range fetched once
    if kind == "segment-base":
        assert all(" bytes=" in r for r in media), seen  # byte ranges, never a whole track


@pytest.mark.skipif(
    not chromium_available(), reason="Chromium and the player page are not installed"
)
@pytest.mark.parametrize("kind", sorted(MPDS))
async def test_hls_js_plays_a_dash_served_as_hls(kind, make_gateway, origin):
    gw = await make_gateway()
    run = await play_in_browser(
        gw.mint_as_hls(origin.base_url + MPDS[kind]), engine="hls.js", seconds=3.0
    )
    assert run.ok, run.errors or run.log[-3000:]
    assert run.current_time >= 3.0


@pytest.mark.parametrize("kind", sorted(MPDS))
async def test_every_uri_leads_to_the_bytes_the_mpd_names(kind, make_gateway, origin, media):
    """Master → media playlists under the same /s/ token; segments and inits at /p/ URLs
    (relative, so any host or path prefix in front works) answering the origin's bytes."""
    gw = await make_gateway()
    master_url = gw.mint_as_hls(origin.base_url + MPDS[kind])
    async with aiohttp.ClientSession() as session:

        async def get(url: str, byterange: str | None = None) -> bytes:
            headers = {}
            if byterange:
                length, offset = map(int, byterange.split("@"))
                headers["Range"] = f"bytes={offset}-{offset + length - 1}"
            async with session.get(url, headers=headers) as response:
                assert response.status in (200, 206), (url, response.status, await response.text())
                return await response.read()

        master = m3u8.loads((await get(master_url)).decode())
        playlists = [p.uri for p in master.playlists] + [m.uri for m in master.media]
        assert playlists and all(re.fullmatch(r"[av]-\w+\.m3u8", uri) for uri in playlists)
        for uri in playlists:
            playlist_url = resolve(master_url, uri)
            text = (await get(playlist_url)).decode()
            playlist = m3u8.loads(text)
            files = [*playlist.segment_map, *playlist.segments]
            assert all(item.uri.startswith("../../p/") for item in files), text
            for item in files:
                url = resolve(playlist_url, item.uri)
                body = await get(url, item.byterange)
                token, rest = url.split("/p/", 1)[1].split("/", 1)
                upstream = gw.state.links.signer.verify(token).directory + rest
                assert FILES[kind].match(upstream.removeprefix(origin.base_url)), upstream
                expected = media.read(upstream.removeprefix(origin.base_url))
                if item.byterange:
                    length, offset = map(int, item.byterange.split("@"))
                    expected = expected[offset : offset + length]
                assert body == expected


async def test_an_unknown_rendition_is_404_and_a_live_mpd_a_one_line_502(make_gateway, origin):
    gw = await make_gateway()
    master_url = gw.mint_as_hls(origin.base_url + MPDS["template"])
    live = (
        (origin.root / "dash/manifest.mpd")
        .read_bytes()
        .replace(b'type="static"', b'type="dynamic"')
    )
    origin.set_file("/live/manifest.mpd", live)
    async with aiohttp.ClientSession() as session:
        async with session.get(master_url.replace("index.m3u8", "v-nope.m3u8")) as response:
            assert response.status == 404
        async with session.get(master_url.replace("index.m3u8", "init.mp4")) as response:
            assert response.status == 404
        async with session.get(gw.mint_as_hls(origin.base_url + "/live/manifest.mpd")) as response:
            assert response.status == 502
            assert "dynamic MPDs cannot be served as HLS" in await response.text()
