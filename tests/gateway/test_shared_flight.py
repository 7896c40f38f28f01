"""Single-flight across processes: followers stream the leader's file; a dead leader is replaced.

Two gateways in one test process share a cache directory, a Redis and a node name, exactly
as two workers of one node do; they coordinate only through Redis and the disk.
"""

import asyncio
import json
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway.cache.keys import storage_name

SEG = "/ts/seg_002.ts"


@pytest.fixture
async def pair(make_gateway, redis_url, tmp_path):
    shared = {
        "redis_url": redis_url,
        "redis_prefix": f"test-{uuid.uuid4().hex}",
        "node_name": "node-1",
        "cache_dir": tmp_path / "shared-cache",
        "prefetch_segments": 0,
    }
    first = await make_gateway(**shared)
    second = await make_gateway(**shared)
    yield first, second, shared
    await first.state.cache.index.clear()


async def body_of(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_a_second_worker_streams_the_first_workers_fill(pair, origin, media):
    first, second, _ = pair
    origin.behave(SEG, drip=(16 * 1024, 0.05))
    url = origin.base_url + SEG
    leader = asyncio.create_task(body_of(first.mint(url)))
    await asyncio.sleep(0.2)  # the first worker holds the lock and is filling
    follower = await body_of(second.mint(url))
    assert follower == await leader == media.read(SEG)
    assert origin.count(SEG) == 1


async def fake_dead_leader(gw, settings, url: str, value: dict) -> None:
    """A lock as a worker killed with SIGKILL leaves it: never extended, never released."""
    name = storage_name(gw.state.fetcher.key_for(url))
    key = f"{settings['redis_prefix']}:{{{settings['node_name']}}}:flight:{name}"
    client = aioredis.Redis.from_url(settings["redis_url"])
    await client.set(key, json.dumps({"token": "dead", "pid": 1, **value}), px=800)
    await client.aclose()


async def test_a_leader_that_died_before_answering_is_taken_over(pair, origin, media):
    _, second, settings = pair
    url = origin.base_url + SEG
    await fake_dead_leader(second, settings, url, {})
    assert await body_of(second.mint(url)) == media.read(SEG)
    assert origin.count(SEG) == 1  # the dead leader never fetched; the taker-over did, once


async def test_a_leader_that_died_mid_fill_cuts_followers_short_and_leaves_no_entry(
    pair, origin, media, tmp_path
):
    _, second, settings = pair
    url = origin.base_url + SEG
    partial = tmp_path / "shared-cache" / "tmp" / "dead-leader"
    partial.parent.mkdir(parents=True, exist_ok=True)
    full = media.read(SEG)
    partial.write_bytes(full[:20_000])
    head = {
        "status": 200,
        "content_type": "video/mp2t",
        "content_length": len(full),
        "content_range": None,
        "etag": None,
        "last_modified": None,
    }
    await fake_dead_leader(
        second, settings, url, {"state": "filling", "head": head, "temp": str(partial)}
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(second.mint(url)) as response:
                await response.read()
        # Nothing partial was cached: the next request fetches and gets every byte.
        assert await body_of(second.mint(url)) == full
    assert origin.count(SEG) == 1


async def test_a_claim_finds_an_object_already_committed_in_the_same_round_trip(redis_url):
    from gateway.cache.index import RedisIndex
    from gateway.cache.segments import new_entry
    from gateway.cache.shared_flight import Committed, FlightLocks

    prefix = f"test-{uuid.uuid4().hex}"
    index = RedisIndex(redis_url, 10**9, prefix=prefix, node="node-1")
    locks = FlightLocks(redis_url, prefix=prefix, node="node-1", entries_key=index.entries_key)
    probe = aioredis.from_url(redis_url)
    try:
        assert locks.checks_index
        committed = new_entry("done", "key", 10, "video/mp2t")
        await index.put(committed)
        assert await locks.claim("done") == Committed(committed)
        assert await probe.keys(f"{prefix}:*flight:*") == []  # no lock taken for it

        first = await locks.claim("fresh")
        assert first is not None and not isinstance(first, Committed)
        assert await locks.claim("fresh") is None  # led by the first claim
        await locks.release(first)
    finally:
        await index.clear()
        await index.close()
        await locks.close()
        await probe.aclose()


async def test_clients_joining_a_fill_under_way_do_not_ask_the_index(
    make_gateway, redis_url, origin
):
    gw = await make_gateway(
        redis_url=redis_url, redis_prefix=f"test-{uuid.uuid4().hex}", prefetch_segments=0
    )
    origin.behave(SEG, drip=(8 * 1024, 0.05))  # still filling while the others arrive
    url = gw.mint(origin.base_url + SEG)
    probe = aioredis.from_url(redis_url)

    async def index_reads() -> int:
        stats = await probe.info("commandstats")
        return int(stats.get("cmdstat_hget", {}).get("calls", 0))

    try:
        before = await index_reads()
        first = asyncio.create_task(body_of(url))
        await asyncio.sleep(0.2)
        assert not first.done()
        bodies = await asyncio.gather(*(body_of(url) for _ in range(20)))
        assert await first == bodies[0]
        assert await index_reads() - before <= 2  # the first client's lookup, and its flight's
    finally:
        await probe.aclose()
        await gw.state.cache.index.clear()


async def test_a_cold_miss_reads_the_index_once_and_a_later_hit_once(
    make_gateway, redis_url, origin
):
    # The flight's claim reads the index for it (and hands over the entry it found), so
    # neither a miss nor a hit beyond the few seconds of the local map asks Redis twice.
    gw = await make_gateway(
        redis_url=redis_url, redis_prefix=f"test-{uuid.uuid4().hex}", prefetch_segments=0
    )
    url = gw.mint(origin.base_url + SEG)
    probe = aioredis.from_url(redis_url)

    async def index_reads() -> int:
        stats = await probe.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hget", "hexists"))

    try:
        before = await index_reads()
        assert await body_of(url) == (origin.root / SEG.lstrip("/")).read_bytes()
        after_miss = await index_reads()
        gw.state.cache.forget_hot(storage_name(gw.state.fetcher.key_for(origin.base_url + SEG)))
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.headers["X-Cache"] == "HIT"
        after_hit = await index_reads()
    finally:
        await probe.aclose()
        await gw.state.cache.index.clear()
    # The miss: its claim, and the commit's own check of what it replaces.
    assert after_miss - before == 2
    assert after_hit - after_miss == 1
