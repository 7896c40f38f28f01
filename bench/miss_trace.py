"""Where a cold miss's time goes: the load generator's send and first byte, and the
gateway's steps in between, on one clock.

    python -m bench.miss_trace [--requests 300] [--object seg_003.ts|small_20k.ts]

Sequential misses (every request names an object nobody asked for before, as in
`bench.miss_ttfb`) against a gateway run by `bench.traced_gateway`, which stamps each step.
Prints the median time between consecutive steps, and the same client's time to first byte
from the origin directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import time
from collections.abc import Callable

import aiohttp

from bench.common import Gateway, free_port, save, static_nginx, workdir
from bench.miss_ttfb import OBJECTS, directory_of, make_miss_media
from tests.support.redis_server import throwaway_redis

STEPS = (
    "client sends",
    "request in",
    "routed",
    "answer task runs",
    "looked up",
    "flight task runs",
    "claim asked",
    "claimed",
    "looked up again",
    "upstream asked",
    "client's request",
    "request built",
    "pool asked",
    "pooled connection",
    "upstream request sent",
    "upstream bytes in",
    "upstream head",
    "head handed over",
    "first write",
    "client's first byte",
)
_names = itertools.count()


async def stamped(session: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    """When the request went out, and when its first body byte was read (perf_counter_ns)."""
    sent = time.perf_counter_ns()
    async with session.get(url) as response:
        await response.content.readany()
        first = time.perf_counter_ns()
        await response.read()
    return sent, first


async def run(
    session: aiohttp.ClientSession, make_url: Callable[[str], str], name: str, count: int
) -> list[tuple[int, int]]:
    return [await stamped(session, make_url(f"cold_{next(_names)}_{name}")) for _ in range(count)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--object", choices=OBJECTS.values(), default=OBJECTS["1.1 MB segment"])
    parser.add_argument(
        "--redis", action="store_true", help="the index in Redis (its own server), as deployed"
    )
    args = parser.parse_args()
    with workdir() as work, contextlib.ExitStack() as stack:
        media = make_miss_media(work)
        origin = static_nginx(work / "origin", media, cold_names=True)
        stack.callback(origin.stop)
        origin_base = f"http://127.0.0.1:{origin.port}"
        trace = work / "steps.jsonl"
        shared: dict[str, str] = {}
        if args.redis:
            shared["redis_url"] = stack.enter_context(throwaway_redis(work / "redis"))
        gateway = Gateway(free_port(), work / "cache")
        gateway.start(
            entry="bench.traced_gateway", prefetch_segments="0", trace_file=str(trace), **shared
        )
        try:
            make = directory_of(gateway, origin_base)
            async with aiohttp.ClientSession() as session:
                await run(session, make, args.object, args.requests // 4)  # warm-up
                client = await run(session, make, args.object, args.requests)
                direct = await run(
                    session, lambda name: f"{origin_base}/vod/{name}", args.object, args.requests
                )
        finally:
            gateway.stop()
        rows = [json.loads(line) for line in trace.read_text().splitlines()][-len(client) :]
    gaps: dict[str, list[float]] = {}
    for (sent, first), row in zip(client, rows, strict=True):
        stamps = {"client sends": sent, **row, "client's first byte": first}
        present = [step for step in STEPS if step in stamps]
        for before, after in itertools.pairwise(present):
            gaps.setdefault(f"{before} → {after}", []).append(
                (stamps[after] - stamps[before]) / 1000
            )
    index = "Redis index" if args.redis else "embedded index"
    print(
        f"\n## A cold miss step by step ({args.object}, {index}, "
        f"{args.requests} sequential misses)\n"
    )
    print("| step | p50 µs |\n|---|---|")
    summary = {}
    for step, values in gaps.items():
        summary[step] = statistics.median(values)
        print(f"| {step} | {summary[step]:.0f} |")
    total = statistics.median((first - sent) / 1000 for sent, first in client)
    origin_direct = statistics.median((first - sent) / 1000 for sent, first in direct)
    print(f"| time to first byte through the gateway | {total:.0f} |")
    print(f"| time to first byte from the origin directly | {origin_direct:.0f} |")
    summary.update(gateway_ttfb=total, origin_ttfb=origin_direct)
    print(f"results: {save('miss_trace', summary)}")


if __name__ == "__main__":
    asyncio.run(main())
