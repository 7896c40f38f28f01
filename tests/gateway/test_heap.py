"""Freed heap is kept for the next body: cold misses reuse pages already mapped instead of
faulting in fresh ones for every read from upstream."""

import os
import platform
import subprocess
import sys
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

# A fresh process that does what a miss does to the heap: five reads of 256 KB alive at once,
# all freed when the body is done; prints the page faults per such body.
_BODIES = """
import resource, sys
from gateway.heap import keep_freed_heap
if sys.argv[1] == "keep":
    keep_freed_heap(64 * 1024 * 1024)
def body():
    reads = [b"x" * 256_000 for _ in range(5)]
    del reads
for _ in range(3):
    body()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    body()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
"""


def faults_per_body(policy: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _BODIES, policy], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def test_kept_heap_is_reused_where_the_c_library_gives_it_back_after_every_body():
    # 5 x 256 KB is 313 pages: glibc's own policy maps nearly all of them afresh each time.
    assert faults_per_body("default") > 150
    assert faults_per_body("keep") < 10


def test_nothing_to_keep_leaves_the_c_library_alone():
    assert keep_freed_heap(0) is False


def minor_faults(pid: int) -> int:
    """Page faults the process took without reading from disk (proc(5), field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


async def test_a_gateway_process_streams_cold_misses_without_faulting_in_their_bodies(
    origin, tmp_path
):
    names = [f"/heap/seg_{n}.ts" for n in range(10 + MISSES)]
    for name in names:
        origin.set_file(name, BODY)
    async with gateway_process(tmp_path / "cache", prefetch_segments="0") as gateway:
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
            per_miss = (minor_faults(gateway.pid) - before) / MISSES
    assert per_miss < PAGES / 10
