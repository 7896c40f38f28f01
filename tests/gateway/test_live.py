"""Live HLS through the gateway: fresh playlists, one upstream fetch per window, no stale stalls."""

import asyncio
import re
import time

import aiohttp

from gateway.fetcher import MANIFEST_LINGER_SECONDS
from playlists.urls import resolve

LIVE = "/live/index.m3u8"


async def fetch(session, url, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def last_segment(playlist: bytes) -> int:
    return int(re.findall(rb"seg_(\d+)\.ts", playlist)[-1])


async def test_a_hundred_pollers_cause_about_one_upstream_fetch_per_refresh_window(
    make_gateway, origin, live_encoder
):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + LIVE)
    seconds, window = 3.0, 0.5  # target duration 1 s: a copy lives half of it

    async def poll(session) -> int:
        polls = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, _, _ = await fetch(session, url)
            assert status == 200
            polls += 1
            await asyncio.sleep(0.1)
        return polls

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        polls = await asyncio.gather(*(poll(session) for _ in range(100)))
    elapsed = time.monotonic() - started  # a loaded machine stretches the last round
    upstream = origin.count(LIVE)
    assert sum(polls) >= 1000
    assert 2 <= upstream <= elapsed / window + 2


async def test_a_live_playlist_is_never_served_older_than_its_window(
    make_gateway, origin, live_encoder
):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + LIVE)
    playlist_file = live_encoder.directory / "index.m3u8"
    async with aiohttp.ClientSession() as session:
        for _ in range(12):
            on_disk = last_segment(playlist_file.read_bytes())
            _, headers, served = await fetch(session, url)
            # The encoder adds a segment a second; half a second of caching can miss one.
            assert last_segment(served) >= on_disk - 1
            assert "immutable" not in headers["Cache-Control"]
            await asyncio.sleep(0.25)


async def test_segments_that_left_the_window_upstream_are_a_404(make_gateway, origin, live_encoder):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, gw.mint(origin.base_url + "/live/seg_00000.ts"))
    assert status == 404
    assert body.count(b"\n") == 1


LIVE_BODY = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\nseg_000.ts\n"


async def test_an_upstream_error_serves_the_last_good_playlist_for_one_target_duration(
    make_gateway, origin
):
    gw = await make_gateway()
    origin.set_file("/ts/flaky.m3u8", LIVE_BODY)
    url = gw.mint(origin.base_url + "/ts/flaky.m3u8")
    async with aiohttp.ClientSession() as session:
        status, _, good = await fetch(session, url)
        assert status == 200
        origin.behave("/ts/flaky.m3u8", status=500)
        await asyncio.sleep(1.1)  # the 1 s copy expired; the 2 s fallback has not
        status, headers, stale = await fetch(session, url)
        assert (status, headers["X-Cache"], stale) == (200, "STALE", good)
        await asyncio.sleep(1.0)
        status, _, _ = await fetch(session, url)
        assert status == 502
    assert origin.count("/ts/flaky.m3u8") == 3


async def test_a_segment_sent_chunked_as_produced_reaches_the_client_chunk_by_chunk(
    make_gateway, origin, media
):
    gw = await make_gateway()
    seg = "/ts/seg_001.ts"
    origin.behave(seg, chunked=True, drip=(8 * 1024, 0.15))
    expected = media.read(seg)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(gw.mint(origin.base_url + seg)) as response:
            first = await response.content.readany()
            first_after = time.monotonic() - started
            body = first + await response.read()
        total = time.monotonic() - started
        assert body == expected
        # Relative to the same run: the first bytes came long before the body ended.
        assert first_after < total / 3
        origin.clear()
        _, headers, again = await fetch(session, gw.mint(origin.base_url + seg))
    assert headers["X-Cache"] == "HIT" and again == expected
    assert origin.requests == []


async def test_ll_hls_blocking_reload_is_held_and_answered_when_upstream_publishes(
    make_gateway, ll_origin
):
    gw = await make_gateway()
    base = gw.mint(ll_origin.base_url + "/ll/live.m3u8")
    async with aiohttp.ClientSession() as session:
        _, _, now = await fetch(session, base)
        msn = int(re.search(rb"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg(\d+)\.part", now).group(1))
        future = f"{base}?_HLS_msn={msn + 1}&_HLS_part=0"
        started = time.monotonic()
        results = await asyncio.gather(*(fetch(session, future) for _ in range(20)))
        held = time.monotonic() - started
        # Meanwhile the gateway kept serving others: the held request blocks nothing.
        status, _, _ = await fetch(session, base)
        assert status == 200
    bodies = {body for status, _, body in results if status == 200}
    assert len(bodies) == 1
    body = bodies.pop()
    assert f'seg{msn + 1}.part0.m4s"'.encode() in body
    assert held >= 0.2  # it really waited for the part to be published
    assert ll_origin.count(f"/ll/live.m3u8?_HLS_msn={msn + 1}&_HLS_part=0") == 1


async def test_ll_hls_parts_hints_and_reports_lead_to_the_right_upstream_bytes(
    make_gateway, ll_origin
):
    gw = await make_gateway()
    playlist_url = gw.mint(ll_origin.base_url + "/ll/live.m3u8")
    async with aiohttp.ClientSession() as session:
        _, _, body = await fetch(session, playlist_url)
        text = body.decode()
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5" in text
        parts = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text)
        hint = re.search(r'#EXT-X-PRELOAD-HINT:[^\n]*URI="([^"]+)"', text).group(1)
        report = re.search(r'#EXT-X-RENDITION-REPORT:URI="([^"]+)"', text).group(1)
        assert parts and report.startswith("../")  # it left the directory: rewritten
        for uri in [*parts[-2:], hint]:
            name = uri.rsplit("/", 1)[-1]
            msn, part = map(int, re.match(r"seg(\d+)\.part(\d+)\.m4s", name).groups())
            status, _, got = await fetch(session, resolve(playlist_url, uri))
            assert status == 200
            assert got == ll_origin.part_bytes(msn, part)


async def test_a_playlist_asked_for_as_its_fetch_ends_is_not_fetched_again(make_gateway, origin):
    # Between a playlist's fetch ending and its first client storing the rewritten copy, a
    # request that found no copy would fetch it again: the fetch answers it instead.
    gw = await make_gateway()
    url = gw.mint(origin.base_url + "/ts/index.m3u8")
    async with aiohttp.ClientSession() as session:
        _, first, body = await fetch(session, url)
        gw.state.manifests.clear()  # as if the second request came before the copy was stored
        _, second, again = await fetch(session, url)
        await asyncio.sleep(MANIFEST_LINGER_SECONDS + 0.05)
        gw.state.manifests.clear()
        _, third, _ = await fetch(session, url)
    assert (first["X-Cache"], second["X-Cache"], third["X-Cache"]) == ("MISS", "COALESCED", "MISS")
    assert again == body
    assert origin.count("/ts/index.m3u8") == 2
