"""Under any fault a client gets the origin's exact bytes, a one-line error or a cut connection;
a failed fill leaves neither a cache entry nor a temp file; everyone else keeps being served.

Each upstream fault runs with a bystander fetching other objects from the same gateway and
origin at the same time, and once more after the fault.
"""

import asyncio
import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import aiohttp
import pytest

from gateway.cache.fill import Fill
from gateway.cache.keys import storage_name
from tests.support.fills import read_all
from tests.support.gateway import fill_temps
from tests.support.ports import free_port

SEG = "/ts/seg_000.ts"
FRESH = "/fmp4/seg_000.m4s"
BYSTANDER_OBJECTS = ["/ts/seg_001.ts", "/ts/seg_002.ts", "/fmp4/index.m3u8", "/ts/seg_003.ts"]


# -- what a client saw -----------------------------------------------------------------------


@dataclass
class Seen:
    status: int
    headers: dict
    body: bytes
    truncated: bool = False

    @property
    def one_line_error(self) -> bool:
        return (
            self.status >= 400
            and self.body.endswith(b"\n")
            and self.body.count(b"\n") == 1
            and b"Traceback" not in self.body
            and self.headers.get("Content-Type", "").startswith("text/plain")
        )


async def fetch(url: str, **kwargs) -> Seen:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, **kwargs) as response:
            headers = dict(response.headers)
            try:
                body = await response.read()
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                return Seen(response.status, headers, b"", truncated=True)
            return Seen(response.status, headers, body)


# -- what the cache holds ---------------------------------------------------------------------


async def settled(gw) -> None:
    """Until every flight has ended: a fill may outlive the client it cut short."""
    for _ in range(200):
        if not gw.state.fetcher._flights:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"flights still running: {list(gw.state.fetcher._flights)}")


async def entry_for(gw, upstream_url: str):
    return await gw.state.cache.lookup(storage_name(gw.state.fetcher.key_for(upstream_url)))


def temp_files(gw) -> list[str]:
    """Temp files of fills, by name."""
    return sorted(p.name for p in fill_temps(gw.state.cache))


# -- everyone else ----------------------------------------------------------------------------


@dataclass
class Bystander:
    served: int = 0
    wrong: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def bystander(gw, origin, media):
    """Other objects fetched in a loop while the fault runs; every answer must be right."""
    seen = Bystander()
    stop = asyncio.Event()

    async def check(path: str) -> None:
        got = await fetch(gw.mint(origin.base_url + path))
        if got.status != 200 or got.truncated:
            seen.wrong.append(f"{path}: {got.status} truncated={got.truncated}")
        elif not path.endswith(".m3u8") and got.body != media.read(path):
            seen.wrong.append(f"{path}: wrong bytes")
        elif path.endswith(".m3u8") and not got.body.startswith(b"#EXTM3U"):
            seen.wrong.append(f"{path}: not a playlist")
        seen.served += 1

    async def loop() -> None:
        i = 0
        while not stop.is_set():
            await check(BYSTANDER_OBJECTS[i % len(BYSTANDER_OBJECTS)])
            i += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(loop())
    try:
        yield seen
    finally:
        stop.set()
        await task
    await check(BYSTANDER_OBJECTS[0])
    assert seen.wrong == []
    assert seen.served >= 2


# -- upstream faults on a segment -------------------------------------------------------------

# name: (origin behaviour, gateway settings, what the client must see)
SEGMENT_FAULTS = {
    "reset mid-body": ({"reset_after": 30_000}, {}, "truncated"),
    "body shorter than Content-Length": ({"short_by": 1000}, {}, "truncated"),
    "hang before headers": ({"delay_headers": 3.0}, {"upstream_read_timeout": 1.0}, 504),
    "hang mid-body": ({"drip": (20_000, 3.0)}, {"upstream_read_timeout": 1.0}, "truncated"),
    "one byte per 1.5 s": ({"drip": (1, 1.5)}, {"upstream_read_timeout": 1.0}, 504),
    "500": ({"status": 500}, {}, 502),
    "503 without Retry-After": ({"status": 503}, {}, 502),
    "404": ({"status": 404}, {}, 404),
}


@pytest.mark.parametrize("fault", list(SEGMENT_FAULTS))
async def test_a_segment_fault_is_a_clean_error_or_a_cut_never_an_entry(
    fault, make_gateway, origin, media
):
    how, settings, expected = SEGMENT_FAULTS[fault]
    gw = await make_gateway(**settings)
    origin.behave(SEG, **how)
    url = origin.base_url + SEG
    async with bystander(gw, origin, media):
        got = await fetch(gw.mint(url))
    if expected == "truncated":
        assert got.status == 200 and got.truncated
    else:
        assert got.status == expected and got.one_line_error, (got.status, got.body[:200])
    await settled(gw)
    assert await entry_for(gw, url) is None
    assert temp_files(gw) == []

    origin.unbehave(SEG)  # the fault is over: the next request fills the cache for real
    healed = await fetch(gw.mint(url))
    assert healed.status == 200 and healed.body == media.read(SEG)
    await settled(gw)
    assert await entry_for(gw, url) is not None


async def test_a_body_longer_than_its_content_length_is_refused_and_poisons_nothing(
    make_gateway, origin, media
):
    gw = await make_gateway()
    origin.behave(SEG, long_by=4096)
    url = origin.base_url + SEG
    async with bystander(gw, origin, media):
        got = await fetch(gw.mint(url))
        # Stray bytes after a response must not become the start of the next one read from
        # the same upstream connection.
        for path in ("/ts/seg_001.ts", "/ts/seg_002.ts", "/ts/seg_003.ts"):
            again = await fetch(gw.mint(origin.base_url + path))
            assert again.status == 200 and again.body == media.read(path)
    # The client's parser rejects the response that arrived with garbage behind it.
    assert got.status == 502 and got.one_line_error, (got.status, got.body[:200])
    await settled(gw)
    assert await entry_for(gw, url) is None
    assert temp_files(gw) == []


async def test_a_429_goes_to_the_client_with_its_retry_after(make_gateway, origin, media):
    gw = await make_gateway()
    origin.behave(SEG, status=429, headers={"Retry-After": "7"})
    url = origin.base_url + SEG
    async with bystander(gw, origin, media):
        got = await fetch(gw.mint(url))
    assert got.status == 429 and got.headers["Retry-After"] == "7" and got.one_line_error
    assert await entry_for(gw, url) is None


@pytest.mark.parametrize("shape", ["loop", "long chain"])
async def test_redirect_loops_and_long_chains_stop_at_the_limit(shape, make_gateway, origin, media):
    gw = await make_gateway(upstream_max_redirects=4)
    if shape == "loop":
        origin.behave("/loop/a.ts", redirect="/loop/b.ts")
        origin.behave("/loop/b.ts", redirect="/loop/a.ts")
        start = "/loop/a.ts"
    else:
        for hop in range(20):
            origin.behave(f"/chain/{hop}.ts", redirect=f"/chain/{hop + 1}.ts")
        start = "/chain/0.ts"
    async with bystander(gw, origin, media):
        origin.clear()
        got = await fetch(gw.mint(origin.base_url + start))
        hops = origin.count("/loop/") + origin.count("/chain/")
    assert got.status == 502 and got.one_line_error
    assert got.body == b"too many upstream redirects\n"
    assert hops == 5  # the first request and four redirects followed, then no more


# -- faults where a playlist is expected ------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
async def test_a_fifty_megabyte_playlist_is_refused_after_reading_about_the_limit(
    framing, make_gateway, origin, media
):
    limit = 1024 * 1024
    gw = await make_gateway(playlist_max_bytes=limit)
    huge = b"#EXTM3U\n" + b"#EXTINF:1,\nseg.ts\n" * (50 * 1024 * 1024 // 17)
    origin.set_file("/huge.m3u8", huge)
    origin.behave("/huge.m3u8", chunked=framing == "chunked", drip=(256 * 1024, 0.005))
    async with bystander(gw, origin, media):
        got = await fetch(gw.mint(origin.base_url + "/huge.m3u8"))
        await settled(gw)
        await asyncio.sleep(0.2)  # let the origin notice the closed connection
    assert got.status == 502 and got.one_line_error
    assert f"larger than {limit} bytes".encode() in got.body
    # Socket buffers hold a few megabytes; the gateway stopped far before fifty.
    assert origin.sent["/huge.m3u8"] < 10 * limit
    assert temp_files(gw) == []


PLAYLIST_FAULTS = {
    "invalid UTF-8": b"#EXTM3U\n#EXTINF:1,\nseg_\xff\xfe.ts\n",
    "NUL bytes": b"#EXTM3U\n#EXTINF:1,\x00\x00\nseg.ts\n",
    "binary after the header": b"#EXTM3U\n" + bytes(range(256)) * 4,
    "malformed MPD": b"<?xml version='1.0'?><MPD xmlns='urn:mpeg:dash:schema:mpd:2011'><Period>",
    "MPD with an entity": (
        b"<?xml version='1.0'?><!DOCTYPE MPD [<!ENTITY a 'aaaa'>]>"
        b"<MPD xmlns='urn:mpeg:dash:schema:mpd:2011'>&a;</MPD>"
    ),
}


@pytest.mark.parametrize("fault", list(PLAYLIST_FAULTS))
async def test_an_unusable_playlist_is_a_one_line_502(fault, make_gateway, origin, media):
    gw = await make_gateway()
    path = "/bad/index.mpd" if b"MPD" in PLAYLIST_FAULTS[fault] else "/bad/index.m3u8"
    origin.set_file(path, PLAYLIST_FAULTS[fault])
    async with bystander(gw, origin, media):
        got = await fetch(gw.mint(origin.base_url + path))
    assert got.status == 502 and got.one_line_error, (got.status, got.body[:200])
    assert temp_files(gw) == []


async def test_binary_where_a_playlist_was_expected_passes_through_as_bytes(
    make_gateway, origin, media
):
    # Whether a body is a playlist is decided by its bytes, not its name: a segment named
    # .m3u8 is a segment, delivered exactly.
    gw = await make_gateway()
    origin.set_file("/odd/index.m3u8", media.read(SEG))
    got = await fetch(gw.mint(origin.base_url + "/odd/index.m3u8"))
    assert got.status == 200 and got.body == media.read(SEG)
    assert got.headers["Content-Type"] == "video/mp2t"


async def test_wrong_content_types_do_not_change_what_is_served(make_gateway, origin, media):
    gw = await make_gateway()
    origin.behave("/ts/index.m3u8", content_type="video/mp2t")
    origin.behave(SEG, content_type="text/html")
    playlist = await fetch(gw.mint(origin.base_url + "/ts/index.m3u8"))
    segment = await fetch(gw.mint(origin.base_url + SEG))
    assert playlist.status == 200 and playlist.body.startswith(b"#EXTM3U")
    assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert segment.status == 200 and segment.body == media.read(SEG)
    assert segment.headers["Content-Type"] == "video/mp2t"


# -- bodies larger than the cache takes -------------------------------------------------------


async def test_an_endless_segment_streams_to_its_client_and_is_never_cached(
    make_gateway, origin, media
):
    gw = await make_gateway(cache_max_object_bytes=200_000)
    endless = media.read(SEG) * 400  # 26 MB standing in for a body that never ends
    origin.set_file("/live/endless.ts", endless)
    origin.behave("/live/endless.ts", chunked=True, drip=(64 * 1024, 0.005))
    url = origin.base_url + "/live/endless.ts"
    async with bystander(gw, origin, media):
        async with aiohttp.ClientSession() as session, session.get(gw.mint(url)) as response:
            assert response.status == 200
            assert await response.content.readexactly(1_000_000) == endless[:1_000_000]
        await settled(gw)
    assert await entry_for(gw, url) is None
    assert temp_files(gw) == []
    assert origin.sent["/live/endless.ts"] < len(endless)


async def test_a_finite_body_over_the_object_limit_is_served_whole_but_not_kept(
    make_gateway, origin, media
):
    gw = await make_gateway(cache_max_object_bytes=10_000)
    url = origin.base_url + SEG
    first = await fetch(gw.mint(url))
    second = await fetch(gw.mint(url))
    assert first.body == second.body == media.read(SEG)
    assert second.headers["X-Cache"] == "MISS"
    await settled(gw)
    assert await entry_for(gw, url) is None and temp_files(gw) == []
    assert origin.count(SEG) == 2


# -- the index going away ---------------------------------------------------------------------


async def test_redis_stopped_and_restarted_under_load(
    make_gateway, origin, media, tmp_path, caplog
):
    from tests.support.redis_server import restartable_redis

    caplog.set_level(logging.WARNING, logger="gateway.cache")
    with restartable_redis(tmp_path) as server:
        gw = await make_gateway(redis_url=server.url, cache_memory_bytes=0, prefetch_segments=0)
        async with bystander(gw, origin, media) as load:
            warm = await fetch(gw.mint(origin.base_url + SEG))
            assert warm.headers["X-Cache"] == "MISS"
            await settled(gw)
            assert (await fetch(gw.mint(origin.base_url + SEG))).headers["X-Cache"] == "HIT"

            server.stop()
            # An object never cached: fetched and streamed every time, kept nowhere.
            down = [await fetch(gw.mint(origin.base_url + FRESH)) for _ in range(3)]
            # A cached one: still right (the file is on disk; the index is what is missing).
            cached = await fetch(gw.mint(origin.base_url + SEG))
            served_while_down = load.served
            await settled(gw)  # every fill above ended while the index was away

            server.start()
            up = [await fetch(gw.mint(origin.base_url + FRESH)) for _ in range(3)]
        assert load.served > served_while_down
    assert [(s.status, s.headers["X-Cache"]) for s in down] == [(200, "MISS")] * 3
    assert cached.status == 200 and cached.body == media.read(SEG)
    assert all(s.body == media.read(FRESH) for s in down + up)
    # Cached again: one fill after the restart, then hits.
    assert (up[0].headers["X-Cache"], up[-1].headers["X-Cache"]) == ("MISS", "HIT"), [
        s.headers["X-Cache"] for s in up
    ]
    assert origin.count(FRESH) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cache index unavailable" in m for m in messages) == 1
    assert sum("cache index reachable again" in m for m in messages) == 1


# -- the disk refusing writes -----------------------------------------------------------------


def fill_up(path) -> None:
    """Fill the disk with something that is not the cache."""
    with contextlib.suppress(OSError), open(path, "wb") as ballast:
        while True:
            ballast.write(b"\0" * 65536)
            ballast.flush()


@contextlib.contextmanager
def small_disk(path, size: str):
    """A tmpfs of `size`, so a full disk is a real ENOSPC; skipped where mounting is not
    allowed."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    with small_disk(tmp_path / "tiny", "1m") as mount:
        yield mount


async def test_a_full_disk_serves_correct_bytes_pass_through_and_logs_once(
    tiny_disk, make_gateway, origin, media, caplog
):
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await make_gateway(cache_dir=tiny_disk / "cache", cache_memory_bytes=0)
    fill_up(tiny_disk / "ballast")
    for path in ("/ts/seg_000.ts", "/ts/seg_001.ts", "/ts/seg_002.ts", "/ts/seg_000.ts"):
        got = await fetch(gw.mint(origin.base_url + path))
        assert got.status == 200 and got.body == media.read(path)
        assert got.headers["X-Cache"] == "MISS"
    await settled(gw)
    assert temp_files(gw) == []
    assert await entry_for(gw, origin.base_url + SEG) is None
    full = [r for r in caplog.records if "cache disk refuses writes" in r.getMessage()]
    assert len(full) == 1 and "No space left" in full[0].getMessage()

    (tiny_disk / "ballast").unlink()
    for _ in range(2):
        got = await fetch(gw.mint(origin.base_url + SEG))
        assert got.body == media.read(SEG)
    assert got.headers["X-Cache"] == "HIT"
    assert sum("cache disk accepts writes again" in r.getMessage() for r in caplog.records) == 1


async def test_a_disk_filling_up_mid_body_leaves_every_reader_every_byte(tmp_path):
    # 6 MiB into a 3 MiB tmpfs: a short write first, then ENOSPC; what the disk did not take
    # stays in memory, so neither a reader keeping up nor one starting late (who reads the
    # start back from the file: more than the in-memory window) loses a byte.
    body = os.urandom(6 * 1024 * 1024)
    with small_disk(tmp_path / "small", "3m") as disk:
        fill = Fill(disk / "temp")
        keeping_up = asyncio.create_task(read_all(fill))
        for offset in range(0, len(body), 200_000):
            fill.append(body[offset : offset + 200_000])
            await asyncio.sleep(0)
            fill.flush()
        late = asyncio.create_task(read_all(fill))
        fill.finish()
        assert await keeping_up == body
        assert await late == body
    assert not fill.on_disk and fill.disk_failed is not None
    assert fill.disk_failed.errno == errno.ENOSPC


@pytest.mark.parametrize("where", ["temp file", "write", "commit"])
async def test_a_disk_refusing_access_serves_pass_through_without_leftovers(
    where, make_gateway, origin, media, monkeypatch, caplog
):
    # Tests run as root, for whom chmod refuses nothing: inject EACCES where the cache writes.
    from gateway.cache import fill, store

    caplog.set_level(logging.INFO, logger="gateway")
    gw = await make_gateway(cache_memory_bytes=0)

    def refuse(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    if where == "temp file":
        real_open, tmp = os.open, gw.state.cache.store.tmp
        monkeypatch.setattr(
            fill.os,
            "open",
            lambda p, *a, **k: refuse() if p.parent == tmp else real_open(p, *a, **k),
        )
    elif where == "write":
        monkeypatch.setattr(fill.os, "pwrite", refuse)
    else:
        monkeypatch.setattr(store.os, "replace", refuse)
    for path in ("/ts/seg_000.ts", "/ts/seg_001.ts", "/ts/seg_000.ts"):
        got = await fetch(gw.mint(origin.base_url + path))
        assert got.status == 200 and got.body == media.read(path)
        assert got.headers["X-Cache"] == "MISS"
    await settled(gw)
    monkeypatch.undo()
    assert temp_files(gw) == []
    assert await entry_for(gw, origin.base_url + SEG) is None
    refused = [r for r in caplog.records if "cache disk refuses writes" in r.getMessage()]
    assert len(refused) == 1 and "Permission denied" in refused[0].getMessage()


# -- a crash in the middle of a fill ----------------------------------------------------------


def spawn_serve(cache_dir, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_CACHE_DIR=str(cache_dir),
        GATEWAY_SECRET="test-secret-0123456789abcdef",
        GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_PREFETCH_SEGMENTS="0",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def start_serving(cache_dir, port: int) -> subprocess.Popen:
    process = spawn_serve(cache_dir, port)
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("hls-gateway serve did not come up")


async def test_kill_9_during_a_fill_leaves_nothing_partial_behind(
    make_gateway, origin, media, tmp_path
):
    # The same secret as the subprocess, so this in-process gateway mints links it accepts.
    minter = await make_gateway()
    cache_dir, port = tmp_path / "served", free_port()
    link = minter.mint(origin.base_url + SEG).replace(minter.base_url, f"http://127.0.0.1:{port}")
    origin.behave(SEG, drip=(4096, 0.05))  # seconds for the whole body

    process = await start_serving(cache_dir, port)
    try:
        async with aiohttp.ClientSession() as session, session.get(link) as response:
            await response.content.readexactly(8192)  # the fill is under way
            leftovers = list((cache_dir / "tmp").iterdir())
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            with contextlib.suppress(aiohttp.ClientError):
                await response.read()
    finally:
        if process.poll() is None:
            process.kill()
    # The fill's temp file, beside the empty ones made ahead for the next fills.
    assert [p.stat().st_size > 0 for p in leftovers].count(True) == 1
    assert not any(path.is_file() for path in (cache_dir / "objects").rglob("*"))

    origin.unbehave(SEG)
    origin.clear()
    process = await start_serving(cache_dir, port)
    try:
        assert list((cache_dir / "tmp").iterdir()) == []
        got = await fetch(link)
        again = await fetch(link)
    finally:
        process.terminate()
        process.wait(10)
    assert got.status == 200 and got.body == media.read(SEG) and got.headers["X-Cache"] == "MISS"
    assert again.body == media.read(SEG) and again.headers["X-Cache"] == "HIT"
    assert origin.count(SEG) == 1


# -- overload ----------------------------------------------------------------------------------


async def test_more_concurrent_requests_than_allowed_get_a_quick_503(make_gateway, origin):
    gw = await make_gateway(max_client_requests=2)
    origin.behave(SEG, delay_headers=1.0)
    slow = [asyncio.create_task(fetch(gw.mint(origin.base_url + SEG))) for _ in range(2)]
    await asyncio.sleep(0.3)
    busy = await fetch(gw.base_url + "/healthz")
    assert busy.status == 503 and b"busy" in busy.body and busy.one_line_error
    assert [seen.status for seen in await asyncio.gather(*slow)] == [200, 200]


async def test_a_burst_beyond_the_upstream_pool_waits_for_a_connection_instead_of_timing_out(
    make_gateway, origin, media
):
    """The connect timeout bounds reaching upstream, not queueing for a pooled connection."""
    gw = await make_gateway(upstream_connections_per_host=2, upstream_connect_timeout=0.5)
    origin.behave(SEG, delay_headers=0.4)
    urls = [gw.mint(origin.base_url + SEG + f"?copy={i}") for i in range(8)]
    seen = await asyncio.gather(*(fetch(url) for url in urls))
    assert [s.status for s in seen] == [200] * 8
    assert all(s.body == media.read(SEG) for s in seen)
