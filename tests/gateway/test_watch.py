"""Page URLs resolved with yt-dlp's generic extractor into stable links that keep playing."""

import asyncio
import json
import re

import aiohttp
import pytest

from playlists.urls import resolve
from tests.support.players import ffprobe, remux

API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def page(src: str, title: str = "Test stream") -> bytes:
    return (
        f"<html><head><title>{title}</title></head><body>"
        f'<video controls><source src="{src}" type="application/x-mpegURL"></video>'
        "</body></html>"
    ).encode()


async def resolve_page(session, gw, page_url: str, **params) -> tuple[int, dict]:
    async with session.get(
        gw.base_url + "/resolve", params={"url": page_url, **params}, headers=AUTH
    ) as response:
        body = await response.read()
        return response.status, json.loads(body) if response.status == 200 else {"error": body}


def local(gw, public_url: str) -> str:
    """Public links point at GATEWAY_PUBLIC_URL; the test gateway listens elsewhere."""
    return gw.base_url + public_url[len(gw.state.links.public_base) :]


async def test_resolve_needs_the_api_key(make_gateway, origin):
    gw = await make_gateway(api_key=API_KEY)
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.base_url + "/resolve", params={"url": origin.base_url}) as r:
            assert r.status == 403
    closed = await make_gateway()
    async with aiohttp.ClientSession() as session:
        async with session.get(closed.base_url + "/resolve", params={"url": origin.base_url}) as r:
            assert r.status == 404


async def test_a_page_resolves_to_formats_and_a_play_link_that_plays(
    make_gateway, origin, tmp_path
):
    gw = await make_gateway(api_key=API_KEY)
    origin.set_file("/watch/page.html", page("/ts/index.m3u8", "Colour bars"))
    async with aiohttp.ClientSession() as session:
        status, info = await resolve_page(session, gw, origin.base_url + "/watch/page.html")
    assert status == 200, info
    assert info["title"].startswith("Colour bars")
    assert info["formats"] and all("/p/" in f["url"] for f in info["formats"])
    assert "127.0.0.1" not in json.dumps(info["formats"]).replace(gw.state.links.public_base, "")
    assert info["play"].endswith("/index.m3u8") and "/watch/" in info["play"]
    direct = await remux(origin.base_url + "/ts/index.m3u8", tmp_path / "direct.ts")
    played = await remux(local(gw, info["play"]), tmp_path / "watch.ts")
    assert played == direct


async def test_twenty_concurrent_watch_requests_cause_one_extraction(make_gateway, origin):
    gw = await make_gateway(api_key=API_KEY)
    origin.set_file("/watch/page.html", page("/ts/index.m3u8"))
    async with aiohttp.ClientSession() as session:
        _, info = await resolve_page(session, gw, origin.base_url + "/watch/page.html")
        gw.state.resolver._cache.clear()  # a cold start for the link
        before = gw.state.resolver.extractions

        async def get() -> int:
            async with session.get(local(gw, info["play"])) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(get() for _ in range(20)))
    assert statuses == [200] * 20
    assert gw.state.resolver.extractions - before == 1
    assert origin.count("/watch/page.html") == 2


async def test_separate_video_and_audio_formats_become_one_multivariant_playlist(
    make_gateway, origin, tmp_path
):
    gw = await make_gateway(api_key=API_KEY)
    async with aiohttp.ClientSession() as session:
        status, info = await resolve_page(session, gw, origin.base_url + "/master/master.m3u8")
        assert status == 200, info
        assert len(info["selected"]) == 2
        async with session.get(local(gw, info["play"])) as response:
            master = (await response.read()).decode()
    assert "#EXT-X-MEDIA:TYPE=AUDIO" in master and "#EXT-X-STREAM-INF" in master
    assert "127.0.0.1" not in master
    played = await remux(local(gw, info["play"]), tmp_path / "split.ts")
    kinds = await ffprobe(
        "-show_entries", "stream=codec_type", "-of", "csv=p=0", str(tmp_path / "split.ts")
    )
    assert played and sorted(set(kinds.decode().split())) == ["audio", "video"]


async def test_a_progressive_page_is_served_as_hls_segmented_by_the_gateway(
    make_gateway, origin, media
):
    gw = await make_gateway(api_key=API_KEY)
    origin.set_file(
        "/watch/prog.html", b'<html><title>p</title><video src="/progressive.mp4"></video></html>'
    )
    async with aiohttp.ClientSession() as session:
        _, info = await resolve_page(session, gw, origin.base_url + "/watch/prog.html")
        async with session.get(local(gw, info["play"])) as response:
            assert response.status == 200 and "/s/" in str(response.url)
            playlist = (await response.read()).decode()
        assert playlist.startswith("#EXTM3U")
    # Only byte ranges of the file were asked for: it is cut into segments, not relayed.
    seen = [r for r in origin.requests if r.path_qs == "/progressive.mp4" and r.method == "GET"]
    assert seen and all("Range" in r.headers for r in seen)


def copy_stream(origin, media, directory: str) -> None:
    origin.set_file(f"/{directory}/index.m3u8", media.read("/ts/index.m3u8"))
    for i in range(4):
        origin.set_file(f"/{directory}/seg_00{i}.ts", media.read(f"/ts/seg_00{i}.ts"))


async def test_expired_urls_are_re_extracted_once_and_playback_continues(
    make_gateway, origin, media, tmp_path
):
    gw = await make_gateway(api_key=API_KEY)
    copy_stream(origin, media, "sig1")
    origin.set_file("/watch/page.html", page("/sig1/index.m3u8"))
    async with aiohttp.ClientSession() as session:
        _, info = await resolve_page(session, gw, origin.base_url + "/watch/page.html")
        play = local(gw, info["play"])
        async with session.get(play) as response:
            old_playlist = await response.read()
        # Upstream rotates its signed paths: the old ones are refused, the page names new ones.
        copy_stream(origin, media, "sig2")
        origin.set_file("/watch/page.html", page("/sig2/index.m3u8"))
        for name in ["index.m3u8", *(f"seg_00{i}.ts" for i in range(4))]:
            origin.behave(f"/sig1/{name}", status=403)
        gw.state.manifests.clear()  # the rewritten copy would hide the expiry for 5 min
        extractions = gw.state.resolver.extractions

        # A player still holding the old playlist keeps getting segments.
        segment_uri = next(
            line for line in old_playlist.decode().splitlines() if line.endswith(".ts")
        )
        async with session.get(resolve(play, segment_uri)) as response:
            assert response.status == 200
            assert await response.read() == media.read(f"/ts/{segment_uri.rsplit('/', 1)[-1]}")
        # And the stable link plays again.
        direct = await remux(origin.base_url + "/ts/index.m3u8", tmp_path / "direct.ts")
        assert await remux(play, tmp_path / "again.ts") == direct
    assert gw.state.resolver.extractions - extractions == 1
    assert origin.count("/sig2/") >= 5


async def test_a_page_that_is_not_a_stream_is_a_clear_422(make_gateway, origin):
    gw = await make_gateway(api_key=API_KEY)
    origin.set_file("/watch/empty.html", b"<html><title>nothing</title><p>no video</p></html>")
    async with aiohttp.ClientSession() as session:
        status, info = await resolve_page(session, gw, origin.base_url + "/watch/empty.html")
    assert status == 422
    assert info["error"].count(b"\n") == 1


@pytest.mark.parametrize("host", ["127.1", "localhost.", "[::ffff:127.0.0.1]"])
async def test_private_page_hosts_are_refused_by_default(make_gateway, origin, host):
    gw = await make_gateway(api_key=API_KEY, allow_private_upstreams=False)
    port = origin.base_url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as session:
        status, _ = await resolve_page(session, gw, f"http://{host}:{port}/watch/page.html")
    assert status == 403
    assert origin.requests == []


async def test_a_tampered_watch_link_is_refused(make_gateway, origin):
    gw = await make_gateway(api_key=API_KEY)
    origin.set_file("/watch/page.html", page("/ts/index.m3u8"))
    async with aiohttp.ClientSession() as session:
        _, info = await resolve_page(session, gw, origin.base_url + "/watch/page.html")
        play = local(gw, info["play"])
        token = re.search(r"/watch/([^/]+)/", play).group(1)
        forged = play.replace(token, token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB"))
        async with session.get(forged) as response:
            assert response.status == 403


async def test_direct_stream_and_file_urls_resolve_too(make_gateway, origin, media):
    gw = await make_gateway(api_key=API_KEY)
    async with aiohttp.ClientSession() as session:
        status, info = await resolve_page(session, gw, origin.base_url + "/ts/index.m3u8")
        assert status == 200 and info["duration"] == 4
        async with session.get(local(gw, info["play"])) as response:
            assert (await response.read()).startswith(b"#EXTM3U")
        status, info = await resolve_page(session, gw, origin.base_url + "/progressive.mp4")
        assert status == 200
        async with session.get(local(gw, info["play"])) as response:
            assert (await response.read()).startswith(b"#EXTM3U")


async def test_workers_sharing_redis_share_one_extraction(make_gateway, origin, redis_url):
    import uuid

    shared = {"api_key": API_KEY, "redis_url": redis_url, "redis_prefix": f"t-{uuid.uuid4().hex}"}
    first, second = await make_gateway(**shared), await make_gateway(**shared)
    origin.set_file("/watch/page.html", page("/ts/index.m3u8", "Shared"))
    async with aiohttp.ClientSession() as session:
        status, one = await resolve_page(session, first, origin.base_url + "/watch/page.html")
        assert status == 200
        status, two = await resolve_page(session, second, origin.base_url + "/watch/page.html")
        assert status == 200
    assert (first.state.resolver.extractions, second.state.resolver.extractions) == (1, 0)
    assert one["title"] == two["title"] and one["selected"] == two["selected"]
    assert origin.count("/watch/page.html") == 1
