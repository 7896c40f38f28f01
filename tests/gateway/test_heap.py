"""Freed heap is kept for the next body: the megabytes of text a long playlist's rewrite
makes, and the reads of a cold miss, reuse pages already mapped instead of faulting in fresh
ones every time."""

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.heap import keep_freed_heap
from tests.support.gateway_process import GatewayProcess, gateway_process
from tests.support.origin import Origin

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the heap policy is glibc's mallopt"
)

MISSES = 30

# A 10,000-segment playlist of absolute URLs, as CDNs serve it: its rewrite makes a new
# string of about 1.4 MB every time.
CDN = "https://cdn.example.com/vod/"
LONG_PLAYLIST = (
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
    + "".join(f"#EXTINF:2.000,\n{CDN}seg_{i:05d}.ts\n" for i in range(10_000))
    + "#EXT-X-ENDLIST\n"
).encode()

# A fresh process with the worker's heap policy ("keep") or the C library's own
# ("default"), printing the page faults per call of the `work()` put between these, once
# three calls have grown the heap to what it needs. Its stdin is `LONG_PLAYLIST`.
_BEFORE_WORK = """
import resource, sys
from gateway.heap import keep_freed_heap
from gateway.settings import Settings
if sys.argv[1] == "keep":
    keep_freed_heap(Settings.model_fields["heap_keep_bytes"].default)
"""
_AFTER_WORK = """
for _ in range(3):
    work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    work()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""

# What a miss does to the heap: five reads of 256 KB alive at once, all freed when the body
# is done.
_MISS_BODY = """
def work():
    reads = [b"x" * 256_000 for _ in range(5)]
    del reads
"""

# `LONG_PLAYLIST` rewritten, as the gateway does for the usual CDN playlist.
_PLAYLIST_REWRITE = f"""
from playlists import hls
body = sys.stdin.buffer.read()
ref = "../" + "A" * 90 + "/"
def work():
    return hls.rewrite(body, base_url="{CDN}index.m3u8", keep_relative_inside=None,
                       make_ref=lambda url: ref + url.rsplit("/", 1)[1], directory_ref=lambda d: ref)
assert work().count(ref.encode()) == 10_000
"""


def faults_per_call(work: str, policy: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _BEFORE_WORK + work + _AFTER_WORK, policy],
        input=LONG_PLAYLIST,
        capture_output=True,
        check=True,
    )
    return float(out.stdout)


def test_kept_heap_is_reused_where_the_c_library_gives_it_back_after_every_body():
    # 5 x 256 KB is 313 pages: glibc's own policy maps nearly all of them afresh each time.
    assert faults_per_call(_MISS_BODY, "default") > 150
    assert faults_per_call(_MISS_BODY, "keep") < 10


def test_a_long_playlists_rewrite_reuses_kept_heap_for_its_megabytes_of_text():
    # About 340 pages of output: the C library's own policy maps them afresh each time, and
    # so did an mmap threshold of 1 MB (596 faults per rewrite).
    assert faults_per_call(_PLAYLIST_REWRITE, "default") > 150
    assert faults_per_call(_PLAYLIST_REWRITE, "keep") < 10


def test_nothing_to_keep_leaves_the_c_library_alone():
    assert keep_freed_heap(0) is False


def minor_faults(pid: int) -> int:
    """Page faults the process took without reading from disk (proc(5), field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


# The gateway's settings for each heap policy (0 leaves the C library's own in place).
HEAP_POLICIES = {"kept heap": {}, "the C library's policy": {"heap_keep_bytes": "0"}}
WARM_UP = 10


Check = Callable[[aiohttp.ClientResponse, bytes], None]


async def faults_per_request(
    gateway: GatewayProcess, origin: Origin, names: list[str], check: Check
) -> float:
    """The gateway's page faults per GET of `names` after the first `WARM_UP` (which grow
    its heap to what one needs); `check(response, body)` sees every answer. One link signs
    the directory: the other names beside it are other objects."""
    directory = (await gateway.mint(origin.base_url + names[0])).rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session:

        async def get(name: str) -> None:
            async with session.get(f"{directory}/{name.rsplit('/', 1)[1]}") as response:
                check(response, await response.read())

        for name in names[:WARM_UP]:
            await get(name)
        before = minor_faults(gateway.pid)
        for name in names[WARM_UP:]:
            await get(name)
    return (minor_faults(gateway.pid) - before) / (len(names) - WARM_UP)


async def test_a_gateway_process_rewrites_one_long_playlist_after_another_in_the_same_pages(
    origin, tmp_path
):
    # Live playlists are fetched and rewritten again and again, and each rewrite of a long
    # one makes megabytes of text that are freed when the next replaces it. With no playlist
    # cache, every request here is such a rewrite.
    names = [f"/heap/list_{n}.m3u8" for n in range(WARM_UP + MISSES)]
    for name in names:
        origin.set_file(name, LONG_PLAYLIST)

    def rewritten(response: aiohttp.ClientResponse, body: bytes) -> None:
        assert body.count(b"#EXTINF:") == 10_000

    faults = {}
    for policy, settings in HEAP_POLICIES.items():
        async with gateway_process(
            tmp_path / policy, prefetch_segments="0", playlist_vod_ttl="0", **settings
        ) as gateway:
            faults[policy] = await faults_per_request(gateway, origin, names, rewritten)
    print(f"page faults per rewrite: {faults}")  # shown with -s
    # The rewritten text is about 1.4 MB, 340 pages: the C library maps it afresh each time
    # (about 590 faults per rewrite here), the kept heap reuses it (about 10).
    assert faults["the C library's policy"] > 150
    assert faults["kept heap"] < 40


@pytest.mark.parametrize("size", [1_100_000, 1_400_000])
async def test_a_gateway_process_streams_cold_misses_without_faulting_in_their_bodies(
    origin, tmp_path, size
):
    # A fill hands its chunks on and keeps only the newest in memory, and the worker keeps
    # freed heap: the reads from upstream reuse the same pages (about 0.6 faults per miss)
    # whatever the body's size. Under the C library's own policy that held only while the
    # heap freed after a miss stayed under glibc's trim threshold (twice the largest
    # mapping freed so far, about 1 MB here): 1.1 MB bodies passed or not as the heap's
    # layout fell, and 1.4 MB bodies faulted in 85-90 % of their pages every time.
    body = os.urandom(size)
    names = [f"/heap/seg_{size}_{n}.ts" for n in range(WARM_UP + MISSES)]
    for name in names:
        origin.set_file(name, body)

    def missed(response: aiohttp.ClientResponse, received: bytes) -> None:
        assert response.headers["X-Cache"] == "MISS"
        assert received == body

    async with gateway_process(tmp_path / "cache", prefetch_segments="0") as gateway:
        per_miss = await faults_per_request(gateway, origin, names, missed)
    assert per_miss < size // 4096 / 10
