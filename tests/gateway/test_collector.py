"""The garbage collector in a worker: what start-up made is left out of full collections,
and every pause is counted in /metrics."""

import gc

import aiohttp

from gateway.cache.entry import Entry
from gateway.cache.index import MemoryIndex
from gateway.collector import PauseTimer
from tests.support.gateway_process import GatewayProcess, gateway_process
from tests.support.origin import Origin
from tests.support.raw_http import metric


async def serve_misses(gateway: GatewayProcess, origin: Origin, count: int) -> None:
    """`count` distinct objects fetched through the gateway, each a cold miss."""
    for n in range(count):
        origin.set_file(f"/gc/{n}.ts", b"\x47" * 188 * (n % 5 + 1))
    directory = (await gateway.mint(f"{origin.base_url}/gc/0.ts")).rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            async with session.get(f"{directory}/{n}.ts") as response:
                assert response.status == 200
                await response.read()


def test_the_timer_hands_over_each_collection_by_generation_until_removed():
    pauses: list[tuple[str, float]] = []
    timer = PauseTimer(lambda generation, seconds: pauses.append((generation, seconds)))
    timer.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        timer.remove()
    generations = [generation for generation, _ in pauses]
    assert "0" in generations
    assert "2" in generations
    assert all(seconds >= 0 for _, seconds in pauses)
    seen = len(pauses)
    gc.collect(2)
    assert len(pauses) == seen


async def test_a_serving_worker_leaves_start_ups_objects_to_the_permanent_generation(
    origin, tmp_path
):
    async with gateway_process(tmp_path / "cache") as gateway:
        await serve_misses(gateway, origin, 300)
        base = gateway.base_url
        # Modules, classes and the app: tens of thousands of objects no full pass walks again.
        assert await metric(base, "gateway_gc_frozen_objects") > 10_000
        # 300 misses allocate enough for the youngest generation to be collected, and each
        # of those pauses is counted.
        assert await metric(base, 'gateway_gc_pause_seconds_count{generation="0"}') > 0
        assert await metric(base, 'gateway_gc_pause_seconds_sum{generation="0"}') > 0


async def test_freezing_can_be_turned_off(tmp_path):
    async with gateway_process(tmp_path / "cache", gc_freeze="false") as gateway:
        assert await metric(gateway.base_url, "gateway_gc_frozen_objects") == 0


async def test_the_embedded_index_adds_nothing_for_the_collector_to_walk_per_entry():
    index = MemoryIndex(10**12)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(2_000):
        entry = Entry(f"{n:064x}", f"https://cdn.example/{n}.ts", 188 * n, "video/mp2t")
        await index.put(entry)
    gc.collect()
    # An object per entry would be 2,000 more; the entries are kept as plain tuples.
    assert len(gc.get_objects()) - before < 1_000
    assert await index.get(f"{7:064x}") == Entry(
        f"{7:064x}", "https://cdn.example/7.ts", 188 * 7, "video/mp2t"
    )
