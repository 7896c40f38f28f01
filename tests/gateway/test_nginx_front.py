"""The shipped nginx/ config in front of real gateways: hits sent by nginx, nodes by hash."""

import gzip
import re
import uuid

import aiohttp
import pytest

from tests.support.gateway_process import gateway_process
from tests.support.nginx import Nginx, nginx_available
from tests.support.players import ffmpeg

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed")


@pytest.fixture
def nginx(tmp_path):
    server = Nginx(tmp_path / "nginx")
    yield server
    server.stop()


def host_port(url: str) -> str:
    return url.removeprefix("http://")


@pytest.mark.parametrize("backend", ["unix:/run/hls-gateway/gateway.sock", "127.0.0.1:8080"])
async def test_the_shipped_config_passes_nginx_t(nginx, tmp_path, backend):
    conf = nginx.write([backend], tmp_path / "cache")
    result = nginx.check(conf)
    assert result.returncode == 0, result.stderr


async def test_nginx_reaches_the_gateway_over_its_unix_socket(tmp_path, origin, media, nginx):
    sock = tmp_path / "gateway.sock"
    cache = tmp_path / "cache"
    settings = {"accel_redirect_prefix": "/_cache/", "unix_socket": str(sock)}
    async with gateway_process(cache, **settings) as gateway:
        nginx.start(nginx.write([f"unix:{sock}"], cache))  # the only way in to the gateway
        seg = "/ts/seg_001.ts"
        front = nginx.base_url + (await gateway.mint(origin.base_url + seg)).removeprefix(
            gateway.base_url
        )
        states = []
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(front) as response:
                    assert response.status == 200
                    assert await response.read() == media.read(seg)
                    states.append(response.headers["X-Cache"])
    assert states == ["MISS", "HIT", "HIT"]
    assert origin.count(seg) == 1


async def test_hits_are_sent_by_nginx_through_x_accel_redirect(make_gateway, origin, media, nginx):
    gw = await make_gateway(accel_redirect_prefix="/_cache/")
    nginx.start(nginx.write([host_port(gw.base_url)], gw.settings.cache_dir))
    seg = "/ts/seg_002.ts"
    expected = media.read(seg)
    front = nginx.base_url + gw.mint(origin.base_url + seg)[len(gw.base_url) :]
    async with aiohttp.ClientSession() as session:
        async with session.get(front) as response:
            assert response.status == 200 and await response.read() == expected
            assert response.headers["X-Cache"] == "MISS"
        async with session.get(front) as response:
            assert response.status == 200 and await response.read() == expected
            assert response.headers["X-Cache"] == "HIT"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Content-Type"] == "video/mp2t"
            assert "X-Accel-Redirect" not in response.headers
            assert len(response.headers.getall("Cache-Control")) == 1
            # Segments never take nginx's cache path (whose lock would queue a hot one).
            assert "X-Edge-Cache" not in response.headers
        async with session.get(front, headers={"Range": "bytes=188-375"}) as response:
            assert response.status == 206 and await response.read() == expected[188:376]
    assert origin.count(seg) == 1


async def test_playlists_are_cached_by_nginx_for_their_own_lifetime(make_gateway, origin, nginx):
    gw = await make_gateway()
    nginx.start(nginx.write([host_port(gw.base_url)], gw.settings.cache_dir))
    front = nginx.base_url + gw.mint(origin.base_url + "/ts/index.m3u8")[len(gw.base_url) :]
    async with aiohttp.ClientSession() as session:
        states = []
        for _ in range(3):
            async with session.get(front) as response:
                assert response.status == 200
                states.append(response.headers["X-Edge-Cache"])
    assert states == ["MISS", "HIT", "HIT"]


async def test_a_big_playlist_is_cached_once_and_compressed_by_nginx_per_client(
    make_gateway, origin, nginx
):
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2"]
    lines += [f"#EXTINF:2.0,\nseg_{n:05d}.ts" for n in range(400)] + ["#EXT-X-ENDLIST"]
    origin.set_file("/big/index.m3u8", ("\n".join(lines) + "\n").encode())
    gw = await make_gateway()
    nginx.start(nginx.write([host_port(gw.base_url)], gw.settings.cache_dir))
    front = nginx.base_url + gw.mint(origin.base_url + "/big/index.m3u8")[len(gw.base_url) :]
    asks = ["gzip", "identity", None, "gzip, deflate, br", None, "identity"]
    answers = []
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for accept in asks:
            headers = {"Accept-Encoding": accept} if accept else {"Accept-Encoding": ""}
            async with session.get(front, headers=headers) as response:
                assert response.status == 200
                answers.append(
                    (
                        response.headers.get("Content-Encoding"),
                        response.headers["X-Edge-Cache"],
                        await response.read(),
                    )
                )
        async with session.get(gw.base_url + "/metrics") as response:
            metrics = await response.text()
    identity = answers[1][2]
    assert identity.startswith(b"#EXTM3U") and identity.count(b"seg_") == 400
    for accept, (encoding, _, body) in zip(asks, answers, strict=True):
        if accept and "gzip" in accept:
            assert encoding == "gzip" and gzip.decompress(body) == identity
        else:
            assert encoding is None and body == identity
    # One copy in nginx's cache serves every encoding: the gateway was asked once.
    assert [state for _, state, _ in answers] == ["MISS"] + ["HIT"] * 5
    assert 'gateway_requests_total{route="p",status="200"} 1.0' in metrics


async def test_two_nodes_behind_consistent_hashing_fetch_each_segment_once(
    make_gateway, origin, media, nginx, redis_url, tmp_path
):
    prefix = f"test-{uuid.uuid4().hex}"
    nodes = [
        await make_gateway(redis_url=redis_url, redis_prefix=prefix, node_name=name)
        for name in ("node-a", "node-b")
    ]
    nginx.start(nginx.write([host_port(gw.base_url) for gw in nodes], tmp_path / "unused"))
    paths = ["/master/master.m3u8", "/ts/index.m3u8", "/fmp4/index.m3u8", "/aes/index.m3u8"]
    for _ in range(2):
        for path in paths:
            playlist = (
                nginx.base_url + nodes[0].mint(origin.base_url + path)[len(nodes[0].base_url) :]
            )
            await ffmpeg("-i", playlist, "-map", "0", "-c", "copy", "-f", "null", "-")
    segments = [r.path_qs for r in origin.requests if re.search(r"\.(ts|m4s|mp4|bin)$", r.path_qs)]
    assert len(segments) >= 20 and len(segments) == len(set(segments))
    used = sum([await gw.state.cache.index.total_bytes() for gw in nodes])
    assert used == sum(len(origin_bytes) for origin_bytes in map(media.read, set(segments)))
    for gw in nodes:
        await gw.state.cache.index.clear()
