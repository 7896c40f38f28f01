"""Prefetch: the segments a player will ask for next are already cached when it asks."""

import asyncio
import re
import time

import aiohttp


async def fetch(session, url) -> tuple[int, dict, bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def until(condition, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def fetched(origin) -> list[str]:
    return [r.path_qs for r in origin.requests if not r.path_qs.endswith(".m3u8")]


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_vod_prefetch_warms_the_next_segments_after_each_request(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=2)
    async with aiohttp.ClientSession() as session:
        await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
        await until(lambda: sorted(fetched(origin)) == ["/ts/seg_000.ts", "/ts/seg_001.ts"])
        await asyncio.sleep(0.2)
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/ts/seg_000.ts"))
        assert headers["X-Cache"] == "HIT"
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/ts/seg_001.ts"))
        assert headers["X-Cache"] == "HIT"
        await until(lambda: "/ts/seg_003.ts" in fetched(origin))
        _, _, text = await fetch(session, gw.base_url + "/metrics")
    assert sorted(fetched(origin)) == [f"/ts/seg_00{i}.ts" for i in range(4)]
    assert metric(text.decode(), "gateway_prefetch_hits_total") == 2


async def test_without_prefetch_nothing_is_fetched_ahead(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=0)
    async with aiohttp.ClientSession() as session:
        await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
        await asyncio.sleep(0.5)
        assert fetched(origin) == []
        _, headers, _ = await fetch(session, gw.mint(origin.base_url + "/ts/seg_000.ts"))
    assert headers["X-Cache"] == "MISS"


async def test_a_master_playlist_alone_prefetches_nothing(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=2)
    async with aiohttp.ClientSession() as session:
        await fetch(session, gw.mint(origin.base_url + "/master/master.m3u8"))
        await fetch(session, gw.mint(origin.base_url + "/master/v1/index.m3u8"))
        await until(lambda: len(fetched(origin)) == 2)
        await asyncio.sleep(0.3)
    assert all(path.startswith("/master/v1/") for path in fetched(origin))


async def test_live_prefetch_warms_the_newest_segments(make_gateway, origin, live_encoder):
    gw = await make_gateway(prefetch_segments=2)
    async with aiohttp.ClientSession() as session:
        _, _, playlist = await fetch(session, gw.mint(origin.base_url + "/live/index.m3u8"))
        newest = re.findall(rb"seg_\d+\.ts", playlist)[-2:]
        await until(lambda: len(fetched(origin)) >= 2)
        await asyncio.sleep(0.2)
        states = [
            (await fetch(session, gw.mint(f"{origin.base_url}/live/{name.decode()}")))[1]["X-Cache"]
            for name in newest
        ]
    assert states == ["HIT", "HIT"]


async def test_a_playlist_nobody_requests_any_more_stops_being_followed(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=1, prefetch_idle_seconds=0.3)
    async with aiohttp.ClientSession() as session:
        await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
        await until(lambda: fetched(origin) == ["/ts/seg_000.ts"])
        await asyncio.sleep(0.6)
        await fetch(session, gw.mint(origin.base_url + "/ts/seg_001.ts"))
        await asyncio.sleep(0.3)
    assert fetched(origin) == ["/ts/seg_000.ts", "/ts/seg_001.ts"]


async def test_prefetched_bytes_evicted_unused_are_counted_as_wasted(make_gateway, origin, media):
    sizes = [len(media.read(f"/ts/seg_00{i}.ts")) for i in range(4)]
    others = [len(media.read(f"/master/v0/seg_00{i}.ts")) for i in range(4)]
    budget = max(sizes[0] + sizes[1], sum(others[:2])) + 1
    gw = await make_gateway(prefetch_segments=2, cache_max_bytes=budget)
    async with aiohttp.ClientSession() as session:
        await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
        await until(lambda: len(fetched(origin)) == 2)
        await asyncio.sleep(0.2)
        for i in range(4):  # fetched directly, not through a playlist: no prefetch
            await fetch(session, gw.mint(f"{origin.base_url}/master/v0/seg_00{i}.ts"))
        _, _, text = await fetch(session, gw.base_url + "/metrics")
    text = text.decode()
    assert metric(text, "gateway_prefetch_bytes_total") == sizes[0] + sizes[1]
    assert metric(text, "gateway_prefetch_wasted_bytes_total") == sizes[0] + sizes[1]
    assert metric(text, "gateway_prefetch_hits_total") == 0


async def test_metrics_count_requests_cache_states_and_upstream_latency(make_gateway, origin):
    gw = await make_gateway(prefetch_segments=0)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            await fetch(session, gw.mint(origin.base_url + "/ts/index.m3u8"))
            await fetch(session, gw.mint(origin.base_url + "/ts/seg_000.ts"))
        await fetch(session, gw.base_url + "/p/forged/x.ts")
        _, headers, text = await fetch(session, gw.base_url + "/metrics")
    text = text.decode()
    assert headers["Content-Type"].startswith("text/plain")
    assert metric(text, 'gateway_cache_results_total{kind="segment",state="MISS"}') == 1
    assert metric(text, 'gateway_cache_results_total{kind="segment",state="HIT"}') == 1
    assert metric(text, 'gateway_cache_results_total{kind="playlist",state="HIT"}') == 1
    assert metric(text, 'gateway_requests_total{route="p",status="200"}') == 4
    assert metric(text, 'gateway_requests_total{route="p",status="403"}') == 1
    assert metric(text, "gateway_upstream_seconds_count") == 2
    assert metric(text, "gateway_cache_bytes") == origin_size(origin, "/ts/seg_000.ts")


def origin_size(origin, path: str) -> int:
    return (origin.root / path.lstrip("/")).stat().st_size
