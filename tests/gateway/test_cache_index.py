"""Both index backends keep the same LRU and byte budget (the Redis one on a real server)."""

import asyncio
import os

from gateway.cache.entry import Entry
from gateway.cache.segments import SegmentCache
from gateway.settings import Settings
from tests.support.gateway import fill_temps


def entry(name: str, size: int) -> Entry:
    return Entry(name=name, key=f"https://o/{name}", size=size, content_type="video/mp2t")


async def test_put_evicts_least_recently_used_first(make_index):
    index = make_index(300)
    for name in ("a", "b", "c"):
        assert await index.put(entry(name, 100)) == []
    await index.touch("a")  # now b is the oldest
    assert await index.put(entry("d", 100)) == ["b"]
    assert await index.total_bytes() == 300
    assert sorted(await index.names()) == ["a", "c", "d"]
    assert await index.get("b") is None
    assert (await index.get("a")).size == 100


async def test_replacing_an_entry_does_not_double_count(make_index):
    index = make_index(1000)
    await index.put(entry("a", 100))
    await index.put(entry("a", 250))
    assert await index.total_bytes() == 250
    await index.remove("a")
    assert await index.total_bytes() == 0
    await index.remove("a")
    assert await index.total_bytes() == 0


async def test_concurrent_puts_keep_the_budget_exact(make_index):
    index = make_index(10_000)
    await asyncio.gather(*(index.put(entry(f"e{i}", 97)) for i in range(400)))
    names = await index.names()
    total = await index.total_bytes()
    assert total == 97 * len(names)
    assert total <= 10_000


async def test_segment_cache_deletes_evicted_files_and_stays_under_budget(make_index, tmp_path):
    settings = Settings(cache_dir=tmp_path, cache_max_bytes=3000, secret="s" * 32)
    cache = SegmentCache(settings, make_index(3000))
    await cache.start()
    for i in range(6):
        temp = cache.store.new_temp()
        temp.write_bytes(bytes([i]) * 1000)
        assert await cache.admit(temp, entry(f"{i:02x}" * 32, 1000))
    on_disk = cache.store.disk_usage()
    assert on_disk <= 3000
    assert await cache.lookup("00" * 32) is None
    hit = await cache.lookup("05" * 32)
    assert hit is not None and hit[1].read_bytes() == bytes([5]) * 1000
    assert not any(cache.store.tmp.iterdir())


async def test_the_embedded_index_rebuilds_from_the_cache_dir(tmp_path):
    settings = Settings(cache_dir=tmp_path, cache_max_bytes=10_000, secret="s" * 32)
    first = SegmentCache(settings)
    await first.start()
    temp = first.store.new_temp()
    temp.write_bytes(b"x" * 500)
    await first.admit(temp, entry("ab" * 32, 500))
    # A crash leaves a temp file and a data file without metadata; neither may survive.
    leftover = tmp_path / "tmp" / "999999-deadbeef"
    leftover.write_bytes(b"partial")
    orphan = first.store.path_of("cd" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half")

    second = SegmentCache(settings)
    await second.start()
    hit = await second.lookup("ab" * 32)
    assert hit is not None and hit[1].read_bytes() == b"x" * 500
    assert not leftover.exists()
    assert not orphan.exists()
    assert await second.index.total_bytes() == 500


async def test_a_file_deleted_behind_the_index_is_a_miss_not_an_error(make_index, tmp_path):
    settings = Settings(cache_dir=tmp_path, cache_max_bytes=10_000, secret="s" * 32)
    cache = SegmentCache(settings, make_index(10_000))
    await cache.start()
    temp = cache.store.new_temp()
    temp.write_bytes(b"y" * 10)
    await cache.admit(temp, entry("ef" * 32, 10))
    os.unlink(cache.store.path_of("ef" * 32))
    cache._hot.clear()
    assert await cache.lookup("ef" * 32) is None
    assert await cache.index.get("ef" * 32) is None


async def test_concurrent_fills_racing_evictions_keep_disk_and_index_in_agreement(
    make_gateway, make_index, origin, media
):
    """Many fills at once against a small budget: no byte lost or counted twice."""
    paths = sorted(
        "/" + str(p.relative_to(media.root))
        for p in media.root.rglob("*")
        if p.suffix in (".ts", ".m4s") and not p.parts[-2].startswith("live")
    )[:30]
    sizes = {path: len(media.read(path)) for path in paths}
    budget = sum(sizes.values()) // 3
    gw = await make_gateway(index=make_index(budget), cache_max_bytes=budget, prefetch_segments=0)
    import aiohttp

    async def fetch(path: str) -> bytes:
        async with (
            aiohttp.ClientSession() as session,
            session.get(gw.mint(origin.base_url + path)) as r,
        ):
            return await r.read()

    bodies = await asyncio.gather(*(fetch(p) for p in paths * 2))
    assert all(body == media.read(path) for body, path in zip(bodies, paths * 2, strict=True))
    store = gw.state.cache.store
    on_disk = sum(
        f.stat().st_size for f in store.objects.rglob("*") if f.is_file() and f.suffix != ".json"
    )
    indexed = await gw.state.cache.index.total_bytes()
    names = await gw.state.cache.index.names()
    assert indexed == on_disk <= budget
    assert indexed == sum([(await gw.state.cache.index.get(n)).size for n in names])
    assert not fill_temps(gw.state.cache)  # no temp file left behind
