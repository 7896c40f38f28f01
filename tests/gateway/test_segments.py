"""Segments through the gateway: single-flight fills, streaming, cache hits, ranges, errors."""

import asyncio
import time

import aiohttp
import pytest

from tests.support.gateway import fill_temps

SEG = "/ts/seg_000.ts"


def origin_bytes(media, path: str) -> bytes:
    return (media.root / path.lstrip("/")).read_bytes()


async def get(session: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, response.headers.copy(), await response.read()


async def test_fifty_concurrent_cold_requests_cause_one_upstream_fetch(
    make_gateway, make_index, origin, media
):
    gw = await make_gateway(index=make_index(10**9))
    origin.behave(SEG, drip=(8 * 1024, 0.02))  # slow enough that all 50 overlap
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(get(session, url) for _ in range(50)))
    expected = origin_bytes(media, SEG)
    assert origin.count(SEG) == 1
    assert all(status == 200 for status, _, _ in results)
    assert all(body == expected for _, _, body in results)
    states = sorted(headers["X-Cache"] for _, headers, _ in results)
    assert states.count("MISS") == 1 and states.count("COALESCED") == 49


async def test_a_waiting_client_gets_bytes_before_the_upstream_body_ends(
    make_gateway, origin, media
):
    gw = await make_gateway()
    size = len(origin_bytes(media, SEG))
    origin.behave(SEG, drip=(16 * 1024, 0.1))  # the whole body takes seconds
    async with aiohttp.ClientSession() as session, session.get(gw.mint(origin.base_url + SEG)) as r:
        started = time.monotonic()
        first = await r.content.readany()
        first_at = time.monotonic() - started
        rest = await r.read()
        total_at = time.monotonic() - started
    assert len(first) < size
    assert len(first) + len(rest) == size
    # First bytes arrive while upstream is still dripping, not after it has finished.
    assert first_at < total_at / 2


async def test_a_small_objects_bytes_do_not_wait_for_its_commit(
    make_gateway, make_index, origin, media, monkeypatch
):
    """An object that arrives in one read (an audio segment, an init section) goes out as it
    arrives; only its last byte waits until the cache has committed it."""
    body = origin_bytes(media, SEG)[:20_000]
    origin.set_file("/small/audio.ts", body)
    gw = await make_gateway(index=make_index(10**9), prefetch_segments=0)
    cache = gw.state.cache
    committing, commit = asyncio.Event(), asyncio.Event()
    admit = cache.admit

    async def held_admit(*args, **kwargs):
        committing.set()
        await commit.wait()
        return await admit(*args, **kwargs)

    monkeypatch.setattr(cache, "admit", held_admit)
    url = gw.mint(origin.base_url + "/small/audio.ts")
    async with aiohttp.ClientSession() as session:
        try:  # the head and the first bytes, while the commit is held
            response = await asyncio.wait_for(session.get(url), 5)
            first = await asyncio.wait_for(response.content.readexactly(len(body) - 1), 5)
            assert committing.is_set() and not commit.is_set()
        finally:
            commit.set()
        rest = await response.read()
        response.release()
        again = await get(session, url)
    assert first + rest == body
    assert again[1]["X-Cache"] == "HIT" and again[2] == body
    assert origin.count("/small/audio.ts") == 1


async def test_the_second_request_is_a_hit_with_no_upstream_request(
    make_gateway, make_index, origin, media
):
    gw = await make_gateway(index=make_index(10**9))
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        first = await get(session, url)
        second = await get(session, url)
    assert first[1]["X-Cache"] == "MISS" and second[1]["X-Cache"] == "HIT"
    assert first[2] == second[2] == origin_bytes(media, SEG)
    assert origin.count(SEG) == 1
    assert second[1]["Content-Type"] == "video/mp2t"
    assert int(second[1]["Content-Length"]) == len(second[2])


async def test_an_upstream_reset_mid_body_leaves_no_cache_entry(make_gateway, make_index, origin):
    gw = await make_gateway(index=make_index(10**9))
    origin.behave(SEG, reset_after=50_000)
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await get(session, url)
        origin.unbehave(SEG)
        status, headers, body = await get(session, url)
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert origin.count(SEG) == 2
    assert await gw.state.cache.index.total_bytes() == len(body)
    assert not fill_temps(gw.state.cache)


async def test_ranges_are_served_from_a_cached_object(make_gateway, origin, media):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG)
    expected = origin_bytes(media, SEG)
    async with aiohttp.ClientSession() as session:
        await get(session, url)
        status, headers, body = await get(session, url, headers={"Range": "bytes=100-299"})
        assert (status, body) == (206, expected[100:300])
        assert headers["Content-Range"] == f"bytes 100-299/{len(expected)}"
        status, _, _ = await get(session, url, headers={"Range": f"bytes={len(expected) + 10}-"})
        assert status == 416
    assert origin.count(SEG) == 1


async def test_a_cold_range_is_forwarded_upstream_and_cached_as_that_range(
    make_gateway, origin, media
):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG)
    expected = origin_bytes(media, SEG)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            status, headers, body = await get(session, url, headers={"Range": "bytes=188-375"})
            assert (status, body) == (206, expected[188:376])
            assert headers["Content-Range"] == f"bytes 188-375/{len(expected)}"
    seen = [r for r in origin.requests if r.path_qs == SEG]
    assert len(seen) == 1 and seen[0].headers["Range"] == "bytes=188-375"


async def test_head_etag_and_not_modified(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        await get(session, url)
        async with session.head(url) as head:
            assert head.status == 200 and head.headers["Accept-Ranges"] == "bytes"
            etag = head.headers["ETag"]
            assert int(head.headers["Content-Length"]) > 0
        status, _, body = await get(session, url, headers={"If-None-Match": etag})
    assert status == 304 and body == b""


async def test_cors_preflight_allows_range_and_responses_expose_content_range(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        async with session.options(
            url,
            headers={
                "Origin": "https://player.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range",
            },
        ) as pre:
            assert pre.status == 204
            assert "range" in pre.headers["Access-Control-Allow-Headers"].lower()
            assert pre.headers["Access-Control-Allow-Origin"] == "*"
        status, headers, _ = await get(
            session, url, headers={"Origin": "https://player.example", "Range": "bytes=0-9"}
        )
    assert status == 206
    exposed = headers["Access-Control-Expose-Headers"]
    assert "Content-Range" in exposed and "Content-Length" in exposed
    assert origin.count(SEG) == 1  # the preflight never reached upstream


async def test_a_segment_disguised_as_png_is_served_as_mpeg_ts(make_gateway, origin, media):
    gw = await make_gateway()
    origin.behave("/ts/disguised.png", body=origin_bytes(media, SEG), content_type="image/png")
    async with aiohttp.ClientSession() as session:
        for state in ("MISS", "HIT"):
            _, headers, _ = await get(session, gw.mint(origin.base_url + "/ts/disguised.png"))
            assert headers["Content-Type"] == "video/mp2t" and headers["X-Cache"] == state


@pytest.mark.parametrize(("upstream", "expected"), [(404, 404), (500, 502), (503, 502), (410, 410)])
async def test_upstream_errors_map_to_clear_statuses_and_are_not_cached(
    make_gateway, origin, upstream, expected
):
    gw = await make_gateway()
    origin.behave("/ts/broken.ts", status=upstream)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            status, headers, body = await get(session, gw.mint(origin.base_url + "/ts/broken.ts"))
            assert status == expected
            assert body.decode().count("\n") == 1 and "Traceback" not in body.decode()
            assert headers["Cache-Control"] == "no-store"
    assert origin.count("/ts/broken.ts") == 2


async def test_an_upstream_that_hangs_before_headers_gives_504(make_gateway, origin):
    gw = await make_gateway(upstream_read_timeout=0.5)
    origin.behave(SEG, delay_headers=3)
    async with aiohttp.ClientSession() as session:
        status, _, body = await get(session, gw.mint(origin.base_url + SEG))
    assert status == 504 and b"timed out" in body


async def test_an_unreachable_upstream_gives_502(make_gateway):
    from tests.support.ports import free_port

    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        status, _, _ = await get(session, gw.mint(f"http://127.0.0.1:{free_port()}/x.ts"))
    assert status == 502


async def test_cache_key_ignores_configured_per_viewer_params(make_gateway, origin, media):
    gw = await make_gateway(cache_key_ignore_params={"127.0.0.1": ["viewer"]})
    async with aiohttp.ClientSession() as session:
        for viewer in ("a", "b", "c"):
            _, _, body = await get(session, gw.mint(f"{origin.base_url}{SEG}?viewer={viewer}&v=1"))
            assert body == origin_bytes(media, SEG)
    assert origin.count(SEG) == 1


async def test_eviction_keeps_disk_under_budget(make_gateway, make_index, origin, media):
    sizes = [len(origin_bytes(media, f"/ts/seg_00{i}.ts")) for i in range(4)]
    budget = sizes[0] + sizes[1] + sizes[2] - 1  # room for two, not three
    gw = await make_gateway(index=make_index(budget), cache_max_bytes=budget)
    async with aiohttp.ClientSession() as session:
        for i in range(4):
            await get(session, gw.mint(f"{origin.base_url}/ts/seg_00{i}.ts"))
        assert gw.state.cache.store.disk_usage() <= budget
        # The oldest went first: the newest is still a hit.
        _, headers, _ = await get(session, gw.mint(f"{origin.base_url}/ts/seg_003.ts"))
        assert headers["X-Cache"] == "HIT"
        _, headers, _ = await get(session, gw.mint(f"{origin.base_url}/ts/seg_000.ts"))
        assert headers["X-Cache"] == "MISS"


async def test_popular_hits_are_served_from_memory_with_ranges_and_validators(
    make_gateway, origin, media
):
    gw = await make_gateway(cache_memory_bytes=10**7)
    url = gw.mint(origin.base_url + SEG)
    expected = origin_bytes(media, SEG)
    memory = gw.state.cache.memory
    async with aiohttp.ClientSession() as session:
        await get(session, url)  # miss: fills the disk cache
        _, first_hit, _ = await get(session, url)  # first hit: from disk
        assert memory.bytes == 0
        status, headers, body = await get(session, url)  # second hit: admitted to memory
        assert memory.bytes == len(expected)
        assert (status, headers["X-Cache"], body) == (200, "HIT", expected)
        assert headers["ETag"] == first_hit["ETag"]  # both tiers name the same version
        status, headers, body = await get(session, url, headers={"Range": "bytes=188-375"})
        assert (status, body) == (206, expected[188:376])
        assert headers["Content-Range"] == f"bytes 188-375/{len(expected)}"
        status, _, _ = await get(session, url, headers={"Range": f"bytes={len(expected)}-"})
        assert status == 416
        status, _, body = await get(session, url, headers={"If-None-Match": first_hit["ETag"]})
        assert (status, body) == (304, b"")
    assert origin.count(SEG) == 1


async def test_the_memory_tier_stays_within_its_budget_and_follows_evictions(
    make_gateway, origin, media
):
    sizes = [len(origin_bytes(media, f"/ts/seg_00{i}.ts")) for i in range(4)]
    gw = await make_gateway(cache_memory_bytes=max(sizes) + 1, cache_max_bytes=sum(sizes[:2]) + 1)
    memory = gw.state.cache.memory
    async with aiohttp.ClientSession() as session:
        for i in range(4):
            url = gw.mint(f"{origin.base_url}/ts/seg_00{i}.ts")
            for _ in range(3):
                await get(session, url)
            assert memory.bytes <= max(sizes) + 1
    # seg_000 was evicted from disk long ago: memory must not still hold it.
    first = gw.state.fetcher.key_for(f"{origin.base_url}/ts/seg_000.ts")
    from gateway.cache.keys import storage_name

    assert memory.get(storage_name(first)) is None
