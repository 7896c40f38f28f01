"""Segment time-to-first-byte for a player, with prefetch on and off, against a slow origin.

    python -m bench.prefetch_ttfb [--latency 0.08] [--pause 0.2]

The origin answers every request after `latency` (a far-away CDN). A "player" fetches the
VOD playlist through the gateway, then its segments one after another with a short pause,
as players do while their buffer fills. Each configuration gets a fresh cache.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections import Counter

import aiohttp

from bench.common import Gateway, SlowOrigin, free_port, make_media, save, ttfb, workdir


async def play(
    gateway: Gateway, playlist_url: str, pause: float
) -> tuple[list[float], Counter[str]]:
    url = gateway.mint(playlist_url)
    times: list[float] = []
    states: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            text = await response.text()
        segments = [line for line in text.splitlines() if line and not line.startswith("#")]
        base = url.rsplit("/", 1)[0]
        for name in segments:
            await asyncio.sleep(pause)
            elapsed, state, _ = await ttfb(session, f"{base}/{name}")
            times.append(elapsed * 1000)
            states[state] += 1
    return times, states


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.08)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with workdir() as work:
        media = make_media(work)
        origin = SlowOrigin(media, args.latency)
        runner = await origin.start()
        results: dict[str, list[dict[str, object]]] = {"prefetch 2": [], "prefetch off": []}
        try:
            for round_ in range(args.rounds):
                for name, depth in (("prefetch 2", "2"), ("prefetch off", "0")):
                    gateway = Gateway(free_port(), work / f"cache-{name}-{round_}".replace(" ", ""))
                    gateway.start(prefetch_segments=depth)
                    try:
                        times, states = await play(
                            gateway, f"{origin.base}/vod/index.m3u8", args.pause
                        )
                    finally:
                        gateway.stop()
                    results[name].append(
                        {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "states": dict(states)}
                    )
        finally:
            await runner.cleanup()
    print(f"\n## Segment TTFB through the gateway, origin latency {args.latency * 1000:.0f} ms\n")
    print("| configuration | p50 ms (each run) | p95 ms (each run) | X-Cache seen |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        p50 = ", ".join(f"{r['p50_ms']:.1f}" for r in runs)
        p95 = ", ".join(f"{r['p95_ms']:.1f}" for r in runs)
        print(f"| {name} | {p50} | {p95} | {runs[-1]['states']} |")
    on = statistics.median(r["p50_ms"] for r in results["prefetch 2"])  # type: ignore[misc]
    off = statistics.median(r["p50_ms"] for r in results["prefetch off"])  # type: ignore[misc]
    print(f"\np50 with prefetch / without: {on / off:.2f}×")
    print(f"results: {save('prefetch_ttfb', {'latency': args.latency, 'results': results})}")


if __name__ == "__main__":
    asyncio.run(main())
