"""The shared index and cross-worker locks on a Sentinel-managed master and on a Cluster."""

import uuid

import aiohttp
import pytest

from gateway.cache.index import RedisIndex
from gateway.cache.shared_flight import FlightLocks
from tests.gateway.test_cache_index import entry
from tests.support.redis_server import throwaway_cluster, throwaway_sentinel


@pytest.fixture(params=["sentinel", "cluster"])
def topology_url(request, tmp_path):
    factory = throwaway_sentinel if request.param == "sentinel" else throwaway_cluster
    with factory(tmp_path) as url:
        yield url


async def test_the_index_evicts_least_recently_used_through_any_topology(topology_url):
    index = RedisIndex(topology_url, 300, prefix=f"t-{uuid.uuid4().hex}", node="n1")
    try:
        for name in ("a", "b", "c"):
            assert await index.put(entry(name, 100)) == []
        await index.touch("a")
        assert await index.put(entry("d", 100)) == ["b"]
        assert await index.total_bytes() == 300
    finally:
        await index.clear()
        await index.close()


async def test_flight_locks_are_exclusive_through_any_topology(topology_url):
    locks = FlightLocks(topology_url, prefix=f"t-{uuid.uuid4().hex}", node="n1")
    try:
        claim = await locks.claim("obj")
        assert claim is not None and claim.keeper is not None
        assert await locks.claim("obj") is None
        await locks.publish(claim, state="filling", temp="/x")
        assert (await locks.peek("obj"))["temp"] == "/x"
        await locks.release(claim)
        assert await locks.peek("obj") is None
    finally:
        await locks.close()


async def test_a_gateway_caches_through_any_topology(make_gateway, origin, topology_url):
    gw = await make_gateway(redis_url=topology_url, redis_prefix=f"t-{uuid.uuid4().hex}")
    url = gw.mint(origin.base_url + "/ts/seg_000.ts")
    states = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(url) as response:
                await response.read()
                states.append(response.headers["X-Cache"])
    assert states == ["MISS", "HIT"]
    assert origin.count("/ts/seg_000.ts") == 1
