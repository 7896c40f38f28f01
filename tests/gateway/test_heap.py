"""Freed heap is kept for the next body: cold misses reuse pages already mapped instead of
faulting in fresh ones for every read from upstream."""

import os
import platform
from pathlib import Path

import aiohttp
import pytest

from gateway.heap import keep_freed_heap
from tests.support.gateway_process import gateway_process

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the heap policy is glibc's mallopt"
)

BODY = os.urandom(1_100_000)
PAGES = len(BODY) // 4096
MISSES = 30


def minor_faults(pid: int) -> int:
    """Page faults the process took without reading from disk (proc(5), field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


async def faults_per_miss(origin, cache_dir: Path, **settings: str) -> float:
    names = [f"/heap/{cache_dir.name}_{n}.ts" for n in range(10 + MISSES)]
    for name in names:
        origin.set_file(name, BODY)
    async with gateway_process(cache_dir, prefetch_segments="0", **settings) as gateway:
        # One link signs its directory: the other names beside it are cold objects.
        directory = (await gateway.mint(origin.base_url + names[0])).rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as session:

            async def miss(name: str) -> None:
                async with session.get(f"{directory}/{name.rsplit('/', 1)[1]}") as response:
                    assert response.headers["X-Cache"] == "MISS"
                    assert await response.read() == BODY

            for name in names[:10]:  # the heap grows to what a miss needs
                await miss(name)
            before = minor_faults(gateway.pid)
            for name in names[10:]:
                await miss(name)
            return (minor_faults(gateway.pid) - before) / MISSES


async def test_a_cold_miss_reuses_the_heap_instead_of_faulting_in_its_body(origin, tmp_path):
    kept = await faults_per_miss(origin, tmp_path / "kept")
    given_back = await faults_per_miss(origin, tmp_path / "given_back", heap_keep_bytes="0")
    assert given_back > PAGES / 4  # the C library's own policy: most of each body faulted in
    assert kept < PAGES / 10


def test_nothing_to_keep_leaves_the_c_library_alone():
    assert keep_freed_heap(0) is False
