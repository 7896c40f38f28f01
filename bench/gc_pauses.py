"""Garbage collector pauses under a load of distinct cold misses, with the objects start-up
made frozen (the default) and without.

    python -m bench.gc_pauses [--misses 10000] [--concurrency 8] [--rounds 2]

Two gateways side by side (`GATEWAY_GC_FREEZE` true and false), each asked for distinct
20 KB objects from a local nginx, alternating. Per run: the collections of each generation
the worker counted in /metrics (`gateway_gc_pause_seconds`) and their mean pause, and each
request's time to its whole body as the client saw it. A full collection stops every
request of the worker, so it shows in the top of that distribution.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import time
import urllib.request
from collections.abc import Callable

import aiohttp

from bench.common import Gateway, alternate, ensure_tools, free_port, save, static_nginx, workdir
from bench.miss_ttfb import directory_of, make_miss_media

OBJECT = "small_20k.ts"
_names = itertools.count()  # every run asks for objects nobody asked for before
_PAUSES = re.compile(r'^gateway_gc_pause_seconds_(count|sum)\{generation="(\d)"\} (\S+)$', re.M)


def pauses(gateway: Gateway) -> dict[str, float]:
    """The worker's collections so far: count and seconds, by generation."""
    with urllib.request.urlopen(f"{gateway.base}/metrics") as response:
        text = response.read().decode()
    return {
        f"{kind}{generation}": float(value) for kind, generation, value in _PAUSES.findall(text)
    }


async def misses(links: list[str], concurrency: int) -> list[float]:
    """Each link's time to its whole body (ms), `concurrency` at a time."""
    times: list[float] = []
    queue = list(reversed(links))
    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            while queue:
                url = queue.pop()
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                times.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return times


def run(
    gateway: Gateway, make_url: Callable[[str], str], args: argparse.Namespace
) -> dict[str, float]:
    links = [make_url(f"cold_{next(_names)}_{OBJECT}") for _ in range(args.misses)]
    before = pauses(gateway)
    times = sorted(asyncio.run(misses(links, args.concurrency)))
    after = pauses(gateway)
    row = {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(len(times) * 0.99)],
        "p999_ms": times[int(len(times) * 0.999)],
        "max_ms": times[-1],
    }
    for generation in "012":
        count = after.get(f"count{generation}", 0) - before.get(f"count{generation}", 0)
        spent = after.get(f"sum{generation}", 0) - before.get(f"sum{generation}", 0)
        row[f"gen{generation}_collections"] = count
        row[f"gen{generation}_mean_ms"] = spent / count * 1000 if count else 0.0
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--misses", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_tools()
    with workdir() as work:
        media = make_miss_media(work)
        nginx = static_nginx(work / "origin", media, cold_names=True)
        origin = f"http://127.0.0.1:{nginx.port}"
        frozen = Gateway(free_port(), work / "cache-frozen")
        unfrozen = Gateway(free_port(), work / "cache-unfrozen")
        try:
            frozen.start()
            unfrozen.start(gc_freeze="false")
            in_frozen, in_unfrozen = directory_of(frozen, origin), directory_of(unfrozen, origin)
            results = alternate(
                {
                    "start-up frozen (default)": lambda: run(frozen, in_frozen, args),
                    "not frozen": lambda: run(unfrozen, in_unfrozen, args),
                },
                args.rounds,
            )
        finally:
            frozen.stop()
            unfrozen.stop()
            nginx.stop()
    print(
        f"\n## {args.misses:,} distinct 20 KB misses per run, {args.concurrency} at a time\n\n"
        "| gateway | full collections | mean full pause ms | middle-generation collections "
        "| mean ms | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, rows in results.items():
        for row in rows:
            print(
                f"| {name} | {row['gen2_collections']:.0f} | {row['gen2_mean_ms']:.1f} "
                f"| {row['gen1_collections']:.0f} | {row['gen1_mean_ms']:.2f} "
                f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['p999_ms']:.2f} "
                f"| {row['max_ms']:.1f} |"
            )
    print(f"\nresults: {save('gc_pauses', {'args': vars(args), 'runs': results})}")


if __name__ == "__main__":
    main()
