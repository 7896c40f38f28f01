"""Playlists through the gateway: rewritten once, cached briefly, every URI leading home."""

import asyncio
import re

import aiohttp
import pytest

from gateway.links import PREFIX
from playlists.urls import resolve
from tests.support.corpus import HLS_CORPUS as CORPUS

URI_ATTR = re.compile(r'(?:^|[,:])((?:[A-Z0-9-]*-)?URI|X-ASSET-LIST|X-[A-Z0-9-]*-URL)="([^"]*)"')


def upstream_of(gw, gateway_url: str) -> str:
    """Decode a gateway URL the way the gateway itself does."""
    path = gateway_url[gateway_url.index(PREFIX) + len(PREFIX) :]
    token, _, rest = path.partition("/")
    return gw.state.links.signer.verify(token).directory + rest


def same_resource(url: str) -> str:
    """`http://host` and `http://host/` name one resource (RFC 9110 §4.2.3)."""
    url = url.split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    return (
        url
        if "/" in rest.split("?", 1)[0]
        else f"{scheme}{sep}{rest.replace('?', '/?', 1) if '?' in rest else rest + '/'}"
    )


def uris(line: str) -> list[str]:
    if not line.strip():
        return []
    if not line.startswith("#"):
        return [line.strip()]
    return [value for _, value in URI_ATTR.findall(line)]


async def fetch(session, url, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


async def test_a_relative_playlist_passes_byte_identical(make_gateway, origin, media):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        status, headers, body = await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
    assert status == 200
    assert body == (media.root / "ts" / "index.m3u8").read_bytes()
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"


async def test_absolute_uris_on_other_hosts_are_rewritten_and_lead_to_the_same_bytes(
    make_gateway, origin, media
):
    gw = await make_gateway()
    other = origin.base_url.replace("127.0.0.1", "localhost")
    source = (media.root / "fmp4" / "index.m3u8").read_text()
    absolute = re.sub(r"(?m)^(seg_\d+\.m4s)$", rf"{other}/fmp4/\1", source)
    absolute = absolute.replace('URI="init.mp4"', f'URI="{other}/fmp4/init.mp4"')
    origin.set_file("/abs/index.m3u8", absolute.encode())
    playlist_url = gw.mint(origin.base_url + "/abs/index.m3u8")
    async with aiohttp.ClientSession() as session:
        _, _, body = await fetch(session, playlist_url)
        text = body.decode()
        assert "localhost" not in text
        found = [u for line in text.splitlines() for u in uris(line)]
        assert len(found) == len(re.findall(r"\.m4s|init\.mp4", source))
        for uri in found:
            target = resolve(playlist_url, uri)
            expected_path = upstream_of(gw, target).removeprefix(other)
            status, _, segment = await fetch(session, target)
            assert status == 200
            assert segment == (media.root / expected_path.lstrip("/")).read_bytes()


async def test_a_redirected_playlist_resolves_against_its_final_url(make_gateway, origin, media):
    gw = await make_gateway()
    origin.behave("/moved/index.m3u8", redirect="/ts/index.m3u8")
    playlist_url = gw.mint(origin.base_url + "/moved/index.m3u8")
    async with aiohttp.ClientSession() as session:
        _, _, body = await fetch(session, playlist_url)
        segment_uris = [line for line in body.decode().splitlines() if line and line[0] != "#"]
        assert segment_uris and all(u.startswith("../") for u in segment_uris)
        status, _, first = await fetch(session, resolve(playlist_url, segment_uris[0]))
    assert status == 200
    assert first == (media.root / "ts" / "seg_000.ts").read_bytes()


async def test_vod_playlists_are_served_from_memory_after_the_first_request(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + "/ts/index.m3u8")
    async with aiohttp.ClientSession() as session:
        states = [(await fetch(session, url))[1]["X-Cache"] for _ in range(3)]
        _, headers, _ = await fetch(session, url)
    assert states == ["MISS", "HIT", "HIT"]
    assert origin.count("/ts/index.m3u8") == 1
    # A finished VOD playlist never changes: a CDN in front may keep it for a day.
    assert headers["Cache-Control"] == "public, max-age=86400, immutable"


LIVE = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg_000.ts\n"


async def test_live_playlists_live_for_half_a_target_duration(make_gateway, origin):
    gw = await make_gateway()
    origin.set_file("/ts/live.m3u8", LIVE)
    url = gw.mint(origin.base_url + "/ts/live.m3u8")
    async with aiohttp.ClientSession() as session:
        _, headers, _ = await fetch(session, url)
        await fetch(session, url)
        assert origin.count("/ts/live.m3u8") == 1
        await asyncio.sleep(1.2)
        await fetch(session, url)
    assert headers["Cache-Control"] == "public, max-age=1"
    assert origin.count("/ts/live.m3u8") == 2


async def test_concurrent_playlist_requests_share_one_upstream_fetch(make_gateway, origin):
    gw = await make_gateway()
    origin.behave("/ts/index.m3u8", delay_headers=0.3)
    url = gw.mint(origin.base_url + "/ts/index.m3u8")
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(fetch(session, url) for _ in range(30)))
    assert origin.count("/ts/index.m3u8") == 1
    assert len({body for _, _, body in results}) == 1


async def test_playlists_are_recognised_by_content_not_by_name(make_gateway, origin, media):
    gw = await make_gateway()
    origin.set_file("/ts/list.txt", (media.root / "ts" / "index.m3u8").read_bytes())
    origin.behave("/ts/list.txt", content_type="text/plain")
    origin.set_file("/ts/fake.m3u8", (media.root / "ts" / "seg_000.ts").read_bytes())
    async with aiohttp.ClientSession() as session:
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/ts/list.txt"))
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/ts/fake.m3u8"))
        assert headers["Content-Type"] == "video/mp2t"


async def test_an_oversized_playlist_is_a_502_with_a_reason(make_gateway, origin):
    gw = await make_gateway(playlist_max_bytes=4096)
    origin.set_file("/big.m3u8", b"#EXTM3U\n" + b"#EXTINF:1,\nseg.ts\n" * 1000)
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, gw.mint(origin.base_url + "/big.m3u8"))
    assert status == 502 and b"larger than" in body


async def test_a_binary_body_claiming_to_be_a_playlist_is_a_502(make_gateway, origin):
    gw = await make_gateway()
    origin.set_file("/bad.m3u8", b"#EXTM3U\n\x00\x01\x02garbage\x00")
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, gw.mint(origin.base_url + "/bad.m3u8"))
    assert status == 502
    assert body.count(b"\n") == 1


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.m3u8")))
async def test_corpus_playlists_map_back_through_the_gateway(make_gateway, origin, name):
    """Every URI in the served playlist decodes, via the gateway's own URLs, to what it meant."""
    gw = await make_gateway()
    original = (CORPUS / name).read_bytes()
    upstream = f"{origin.base_url}/corpus/deep/{name}"
    origin.set_file(f"/corpus/deep/{name}", original)
    playlist_url = gw.mint(upstream)
    async with aiohttp.ClientSession() as session:
        status, _, served = await fetch(session, playlist_url)
    assert status == 200
    before = original.decode("utf-8", "replace").split("\n")
    after = served.decode("utf-8", "replace").split("\n")
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        old_uris, new_uris = uris(old), uris(new)
        assert len(old_uris) == len(new_uris)
        if not old_uris:
            assert old == new
        for old_uri, new_uri in zip(old_uris, new_uris, strict=True):
            if "{$" in old_uri:
                continue  # variables are substituted by the player
            if not re.match(r"^(https?:|//|/|[^:]*$)", old_uri):
                assert old_uri == new_uri  # skd:, data: and urn: URIs are the player's
                continue
            meant = same_resource(resolve(upstream, old_uri))
            assert same_resource(upstream_of(gw, resolve(playlist_url, new_uri))) == meant


async def test_master_playlists_get_the_configured_lifetime(make_gateway, origin):
    gw = await make_gateway(playlist_vod_ttl=120)
    async with aiohttp.ClientSession() as session:
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/master/master.m3u8"))
    assert headers["Cache-Control"] == "public, max-age=120"
