"""An MP4 file served as HLS: the gateway writes the playlists and cuts every segment from the
byte ranges its samples occupy, remuxed without transcoding. ffprobe is the judge."""

import asyncio
import json
import subprocess
import sys
import uuid

import aiohttp
import m3u8
import pytest
import redis.asyncio

from tests.support.players import ffmpeg, ffprobe

LAYOUTS = {"faststart": "/long/faststart.mp4", "moov-last": "/long/moov-last.mp4"}
FILE = LAYOUTS["faststart"]


async def probe(*args: str) -> dict:
    return json.loads(await ffprobe("-of", "json", *args))


async def packets_per_stream(url: str) -> dict[str, int]:
    """Packets a player demuxes from `url`, by stream kind."""
    info = await probe("-count_packets", "-show_entries", "stream=codec_type,nb_read_packets", url)
    counts: dict[str, int] = {}
    for stream in info["streams"]:
        counts[stream["codec_type"]] = counts.get(stream["codec_type"], 0) + int(
            stream["nb_read_packets"]
        )
    return counts


async def decode_errors(url: str) -> str:
    _, err = await ffmpeg("-i", url, "-f", "null", "-")
    return err.decode()


async def get(url: str, **kwargs) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def requests_for(origin, path: str) -> list:
    return [r for r in origin.requests if r.path_qs.split("?")[0] == path]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_ffmpeg_plays_every_frame_fetching_only_byte_ranges(
    layout, make_gateway, origin, media
):
    path = LAYOUTS[layout]
    gw = await make_gateway(prefetch_segments=0)
    url = gw.mint_as_hls(origin.base_url + path)

    through = await packets_per_stream(url)
    direct = await packets_per_stream(str(media.root / path.lstrip("/")))
    assert through == direct
    assert "error" not in (await decode_errors(url)).lower()

    seen = requests_for(origin, path)
    assert seen and all(r.headers.get("Range", "").startswith("bytes=") for r in seen)
    # Two plays (probe, decode): the second is served from the cache, so one pass of bytes.
    assert origin.sent[path] <= 1.1 * len(media.read(path))


async def many_frames(tmp_path, *options: str) -> bytes:
    """90 s of tiny 100 fps video and audio: a moov larger than the gateway's first probe."""
    out = tmp_path / "many-frames.mp4"
    await ffmpeg(
        "-y",
        "-f",
        "lavfi",
        "-i",
        "color=size=32x32:rate=100:duration=90",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=90",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "200",
        "-c:a",
        "aac",
        "-b:a",
        "32k",
        *options,
        str(out),
    )
    return out.read_bytes()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_a_large_moov_is_read_with_one_request_after_the_probe(
    layout, make_gateway, origin, tmp_path
):
    """No byte of the moov is asked for twice, and a moov at the end comes with the one
    request for everything after the media data."""
    body = await many_frames(
        tmp_path, *(["-movflags", "+faststart"] if layout == "faststart" else [])
    )
    path = "/long/many-frames.mp4"
    origin.set_file(path, body)
    gw = await make_gateway(prefetch_segments=0)
    assert (await get(gw.mint_as_hls(origin.base_url + path)))[0] == 200
    spans = []
    for seen in requests_for(origin, path):
        first, _, last = seen.headers["Range"].removeprefix("bytes=").partition("-")
        spans.append((int(first), int(last)))
    assert len(spans) == 2, spans
    assert spans[0][0] == 0 and spans[0][1] < spans[1][0]
    if layout == "moov-last":
        assert spans[1][1] == len(body) - 1


async def test_the_master_names_codecs_resolution_and_bandwidth(make_gateway, origin):
    gw = await make_gateway()
    status, headers, body = await get(gw.mint_as_hls(origin.base_url + FILE))
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    master = m3u8.loads(body.decode())
    assert master.is_variant and len(master.playlists) == 1
    info = master.playlists[0].stream_info
    assert info.resolution == (320, 180)
    assert info.codecs.startswith("avc1.") and "mp4a.40.2" in info.codecs
    assert 300_000 < info.bandwidth < 2_000_000


async def test_extinf_durations_sum_to_the_file_duration_within_one_frame(
    make_gateway, origin, media
):
    gw = await make_gateway()
    base = gw.mint_as_hls(origin.base_url + FILE).removesuffix("index.m3u8")
    _, _, body = await get(base + "media.m3u8")
    playlist = m3u8.loads(body.decode())
    assert playlist.is_endlist and playlist.playlist_type == "vod"
    video = (
        await probe(
            "-select_streams",
            "v",
            "-show_entries",
            "stream=duration",
            str(media.root / FILE.lstrip("/")),
        )
    )["streams"][0]
    assert abs(sum(s.duration for s in playlist.segments) - float(video["duration"])) <= 1 / 25
    assert all(s.duration <= playlist.target_duration + 0.5 for s in playlist.segments)
    assert len(playlist.segments) >= 6  # 30 s cut near 4 s


async def test_segments_start_on_keyframes_with_timestamps_continuing_across_them(
    make_gateway, origin, tmp_path
):
    gw = await make_gateway()
    base = gw.mint_as_hls(origin.base_url + FILE).removesuffix("index.m3u8")
    _, _, body = await get(base + "media.m3u8")
    playlist = m3u8.loads(body.decode())
    expected_start = None
    for number, segment in enumerate(playlist.segments):
        status, _, data = await get(base + segment.uri)
        assert status == 200
        file = tmp_path / f"{number}.ts"
        file.write_bytes(data)
        packets = (
            await probe(
                "-select_streams", "v", "-show_entries", "packet=pts_time,dts_time,flags", str(file)
            )
        )["packets"]
        assert packets[0]["flags"].startswith("K"), number
        start = min(float(p["pts_time"]) for p in packets)
        if expected_start is not None:
            assert abs(start - expected_start) < 0.5 / 25, (number, start, expected_start)
        expected_start = start + segment.duration


async def test_the_fmp4_variant_plays_every_frame(make_gateway, origin, media):
    gw = await make_gateway()
    url = gw.mint_as_hls(origin.base_url + FILE).replace("index.m3u8", "fmp4.m3u8")
    _, _, body = await get(url)
    assert '#EXT-X-MAP:URI="init.mp4"' in body.decode()
    assert await packets_per_stream(url) == await packets_per_stream(
        str(media.root / FILE.lstrip("/"))
    )


async def test_a_cold_segment_is_made_once_for_many_clients_then_hit(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=0)
    base = gw.mint_as_hls(origin.base_url + FILE).removesuffix("index.m3u8")
    await get(base + "media.m3u8")  # the index is read; only segment ranges remain
    origin.clear()
    answers = await asyncio.gather(*(get(base + "seg-3.ts") for _ in range(20)))
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    fetched_once = len(requests_for(origin, FILE))
    assert fetched_once >= 1
    _, headers, again = await get(base + "seg-3.ts")
    assert headers["X-Cache"] == "HIT" and again == answers[0][2]
    assert len(requests_for(origin, FILE)) == fetched_once
    # One maker for twenty clients: no byte range was asked for twice.
    assert len({r.headers["Range"] for r in requests_for(origin, FILE)}) == fetched_once


async def test_the_index_is_read_once_for_every_worker_sharing_redis(
    make_gateway, origin, redis_url
):
    shared = {"redis_url": redis_url, "redis_prefix": f"t-{uuid.uuid4().hex}"}
    first, second = await make_gateway(**shared), await make_gateway(**shared)
    source = origin.base_url + LAYOUTS["moov-last"]
    assert (await get(first.mint_as_hls(source).replace("index.m3u8", "media.m3u8")))[0] == 200
    # The first worker shares the parsed index in the background, after answering.
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for _ in range(100):
            if await client.keys(shared["redis_prefix"] + ":mp4index:*"):
                break
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    origin.clear()
    status, _, body = await get(second.mint_as_hls(source).replace("index.m3u8", "media.m3u8"))
    assert status == 200 and b"#EXT-X-ENDLIST" in body
    assert origin.requests == []


async def test_an_origin_without_range_support_is_fetched_whole_once(make_gateway, origin, media):
    gw = await make_gateway(prefetch_segments=0)
    origin.behave(FILE, ignore_range=True)
    url = gw.mint_as_hls(origin.base_url + FILE)
    assert await packets_per_stream(url) == await packets_per_stream(
        str(media.root / FILE.lstrip("/"))
    )
    whole = [r for r in requests_for(origin, FILE) if origin.sent.get(FILE)]
    assert origin.sent[FILE] <= 2 * len(media.read(FILE))  # the probe's cut answer, then one whole
    assert len(whole) <= 2


@pytest.mark.parametrize("path", ["/ts/seg_000.ts", "/ts/index.m3u8", "/aes/key.bin"])
async def test_a_source_that_is_not_an_mp4_is_a_one_line_502(path, make_gateway, origin):
    gw = await make_gateway()
    status, headers, body = await get(gw.mint_as_hls(origin.base_url + path))
    assert status == 502, body
    assert body.count(b"\n") == 1 and headers["Content-Type"].startswith("text/plain")


async def test_unknown_names_and_segments_past_the_end_are_404(make_gateway, origin):
    gw = await make_gateway()
    base = gw.mint_as_hls(origin.base_url + FILE).removesuffix("index.m3u8")
    for name in ("seg-999.ts", "seg-1.mp3", "other.m3u8", "seg-01x.ts"):
        status, _, _ = await get(base + name)
        assert status == 404, name


async def test_a_link_only_works_on_its_own_route(make_gateway, origin):
    gw = await make_gateway()
    as_hls = gw.mint_as_hls(origin.base_url + FILE)
    proxied = gw.mint(origin.base_url + FILE)
    assert (await get(as_hls.replace("/s/", "/p/", 1)))[0] == 403
    assert (await get(proxied.replace("/p/", "/s/", 1).rsplit("/", 1)[0] + "/index.m3u8"))[0] == 403
    assert origin.requests == []


def test_the_command_line_mints_an_as_hls_link(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "url",
            "--as-hls",
            "https://cdn.example.com/v/film.mp4",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={
            "GATEWAY_SECRET": "test-secret-0123456789abcdef",
            "GATEWAY_CACHE_DIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("http://127.0.0.1:8080/s/") and line.endswith("/index.m3u8")
    assert "cdn.example.com" not in line


async def test_a_source_replaced_upstream_is_never_cut_with_a_stale_index(
    make_gateway, origin, media
):
    """A new version of the file (same size, other bytes: only its ETag tells) must not be cut
    with the old index into a cache entry. It is refused; the next playlist request reads anew."""
    gw = await make_gateway(prefetch_segments=0)
    base = gw.mint_as_hls(origin.base_url + FILE).removesuffix("index.m3u8")
    assert (await get(base + "media.m3u8"))[0] == 200
    replacement = bytearray(media.read(FILE))
    replacement[len(replacement) // 2] ^= 0xFF
    origin.set_file(FILE, bytes(replacement))
    status, _, body = await get(base + "seg-2.ts")
    assert status == 502 and b"changed" in body and body.count(b"\n") == 1
    status, _, _ = await get(base + "seg-2.ts")  # the index is read again, from the new file
    assert status == 200
    url = base + "index.m3u8"
    assert await packets_per_stream(url) == await packets_per_stream(
        str(media.root / FILE.lstrip("/"))
    )
