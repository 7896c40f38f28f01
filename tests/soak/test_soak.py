"""A bounded soak: many players at once, a mix of cached and cold segments and playlists, an
origin that resets about one body in a hundred. Counted: requests, faults injected, errors by
kind, wrong bytes (must be none), corrupt cache entries (must be none) and the gateway's RSS.

The short form runs by default; the long one (`-m slow`, `SOAK_SECONDS`, 500 clients) prints
the figures quoted in reviews."""

import asyncio
import collections
import os
import random
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.cache.store import read_entry
from tests.support.gateway import fill_temps

SEGMENTS = [f"/ts/seg_00{i}.ts" for i in range(4)] + [f"/fmp4/seg_00{i}.m4s" for i in range(4)]
PLAYLISTS = ["/ts/index.m3u8", "/fmp4/index.m3u8", "/master/master.m3u8"]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def soak(gw, origin, media, *, clients: int, seconds: float) -> dict:
    counts: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    reference: dict[str, bytes] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        # Warm the cached half and take each rewritten playlist once as the reference.
        for path in SEGMENTS[:4]:
            async with session.get(gw.mint(origin.base_url + path)) as response:
                await response.read()
        for path in PLAYLISTS:
            async with session.get(gw.mint(origin.base_url + path)) as response:
                reference[path] = await response.read()
        origin.reset_probability = 0.01
        cold = iter(range(10**9))

        async def one(rng: random.Random) -> None:
            roll = rng.random()
            if roll < 0.2:
                path, query = rng.choice(PLAYLISTS), ""
            elif roll < 0.6:
                path, query = rng.choice(SEGMENTS[:4]), ""  # cached
            else:
                path, query = rng.choice(SEGMENTS), f"?cold={next(cold)}"  # a new object
            expected = reference[path] if path in reference else media.read(path)
            counts["requests"] += 1
            try:
                async with session.get(gw.mint(origin.base_url + path + query)) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                counts["truncated"] += 1
                return
            except aiohttp.ClientError as exc:
                counts[f"client error {type(exc).__name__}"] += 1
                return
            if status != 200:
                counts[f"status {status}"] += 1
            elif body != expected:
                wrong.append(f"{path}{query}: {len(body)} bytes, expected {len(expected)}")
            else:
                counts["ok"] += 1

        async def player(seed: int, until: float) -> None:
            rng = random.Random(seed)
            while time.monotonic() < until:
                await one(rng)

        end = time.monotonic() + seconds
        tasks = [asyncio.create_task(player(i, end)) for i in range(clients)]
        await asyncio.sleep(min(2.0, seconds / 4))  # warm-up: every player under way
        rss_warm = rss_bytes()
        await asyncio.gather(*tasks)
        rss_end = rss_bytes()
        origin.reset_probability = 0.0

    for _ in range(200):
        if not gw.state.fetcher._flights:
            break
        await asyncio.sleep(0.05)
    corrupt = []
    entries = 0
    for path in gw.state.cache.store.objects.rglob("*"):
        entry = read_entry(path) if path.is_file() else None  # None for an entry file
        if entry is None:
            continue
        entries += 1
        upstream_path = entry.key.removeprefix(origin.base_url).split("?", 1)[0]
        if path.read_bytes() != media.read(upstream_path):
            corrupt.append(entry.key)
    return {
        "clients": clients,
        "seconds": seconds,
        "counts": counts,
        "wrong": wrong,
        "resets_injected": origin.resets_injected,
        "origin_requests": len(origin.requests),
        "cache_entries": entries,
        "corrupt_entries": corrupt,
        "temp_files": sorted(p.name for p in fill_temps(gw.state.cache)),
        "rss_warm": rss_warm,
        "rss_end": rss_end,
    }


def summary(result: dict) -> str:
    counts = result["counts"]
    errors = {k: v for k, v in counts.items() if k not in ("requests", "ok")}
    return (
        f"soak: {result['clients']} clients, {result['seconds']:.0f} s, "
        f"{counts['requests']} requests ({counts['requests'] / result['seconds']:.0f}/s), "
        f"{counts['ok']} ok, errors {dict(errors) or 'none'}, "
        f"resets injected {result['resets_injected']} of {result['origin_requests']} origin "
        f"requests, wrong bytes {len(result['wrong'])}, cache entries {result['cache_entries']} "
        f"(corrupt {len(result['corrupt_entries'])}), temp files left "
        f"{len(result['temp_files'])}, RSS {result['rss_warm'] / 2**20:.0f} MiB after warm-up, "
        f"{result['rss_end'] / 2**20:.0f} MiB at the end"
    )


def check(result: dict) -> None:
    counts = result["counts"]
    assert result["wrong"] == []
    assert result["corrupt_entries"] == []
    assert result["temp_files"] == []
    assert result["resets_injected"] > 0  # the faults really happened
    allowed = {"requests", "ok", "truncated", "status 502"}
    assert set(counts) <= allowed, counts
    # Cold objects have unique URLs and nothing else reaches the origin during the run, so
    # each failure a client saw is one injected reset, never a fault of the gateway's own.
    assert counts["truncated"] + counts["status 502"] <= result["resets_injected"]
    assert counts["ok"] > 0.9 * counts["requests"]


async def test_short_soak_100_clients(make_gateway, origin, media):
    gw = await make_gateway(cache_max_bytes=10**9, prefetch_segments=0)
    result = await soak(gw, origin, media, clients=100, seconds=4)
    print("\n" + summary(result))
    check(result)


@pytest.mark.slow
async def test_long_soak_500_clients(make_gateway, origin, media):
    gw = await make_gateway(cache_max_bytes=10**9, prefetch_segments=0)
    seconds = float(os.environ.get("SOAK_SECONDS", "20"))
    result = await soak(gw, origin, media, clients=500, seconds=seconds)
    print("\n" + summary(result))
    check(result)
