"""Cold-miss time to first byte: origin direct, a bare TCP relay (what any proxy process adds
here, `bench/relay.py`), a bare HTTP proxy in Python (what parsing HTTP on uvloop adds to
that, `bench/http_floor.py`), nginx proxy_cache miss, the gateway (its index embedded, and in
Redis as deployed with several workers or nodes).

    python -m bench.miss_ttfb [--requests 200] [--rounds 3] [--origin nginx|in-process]
                              [--client-slice-us 100]

Every request names an object nobody asked for before (`cold_<n>_seg_003.ts`, which the
origin serves from one file), so each one is a real miss streamed from upstream. Two
objects: a 1.1 MB video segment, and a 20 KB one (the size of an audio segment, an init
section or a subtitle file), whose whole body arrives in one read. The origin
is an nginx process of its own. `--origin in-process` serves it from the load generator's
own event loop instead (what this script did at first): the direct fetch then never leaves
the process, while every proxied one crosses into the proxy and back twice, so the
overhead it reports includes two process wake-ups any proxy pays on this machine. A
warm-up pass of every path comes first and is not counted (the first run of whichever path
went first was up to twice as slow), the paths go in reverse order every other round (as
`bench.common.alternate` does), and each path's overhead is taken against the origin's p50
of the same round, so that drift between rounds does not count as overhead. Beside the
times: the CPU each proxy process spent per miss (user + system, from /proc; for nginx its
master and worker, for the gateway with the Redis index not the Redis server's), a steadier
figure than times on a machine whose speed moves between runs.

The load generator, the origin and the proxy share two cores, and a player does not share
its proxy's. Woken by the first bytes, the load generator could wait for a CPU behind the
origin's burst of sending or the proxy's fill (0.2-0.5 ms per 1.1 MB miss through the
gateway with the kernel's default time slice), which is the instrument's delay and not the
proxy's. So it asks the scheduler for a short slice (`--client-slice-us`, 0.1 ms), which
lets it preempt whoever runs when it wakes; every round is measured a second time with the
default slice, and its overhead is printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import (
    Gateway,
    Nginx,
    SlowOrigin,
    free_port,
    in_turn,
    make_media,
    pid_of,
    queued_seconds,
    save,
    set_scheduler_slice,
    static_nginx,
    tree_cpu_seconds,
    ttfb,
    workdir,
)
from bench.http_floor import start_http_floor
from bench.relay import start_relay
from tests.support.redis_server import throwaway_redis

_names = itertools.count()


OBJECTS = {"1.1 MB segment": "seg_003.ts", "20 KB object": "small_20k.ts"}


def make_miss_media(work: Path) -> Path:
    """The bench media, plus the 20 KB object (the segment's first 20,000 bytes)."""
    media = make_media(work)
    (media / OBJECTS["20 KB object"]).write_bytes((media / "seg_003.ts").read_bytes()[:20_000])
    return media


@dataclass(frozen=True)
class MissPath:
    make_url: Callable[[str], str]
    pid: int | None  # the process whose CPU is counted (None: an origin in this process)


@dataclass
class Runs:
    times_ms: list[list[float]] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # per miss, each run
    # The load generator's wait for a CPU, per miss, each run.
    queued_ms: list[float] = field(default_factory=list)


async def measure(
    session: aiohttp.ClientSession, make_url: Callable[[str], str], name: str, count: int
) -> list[float]:
    times = []
    for _ in range(count):
        elapsed, _state, _size = await ttfb(session, make_url(f"cold_{next(_names)}_{name}"))
        times.append(elapsed * 1000)
    return times


async def measure_run(
    session: aiohttp.ClientSession, path: MissPath, name: str, count: int, runs: Runs
) -> None:
    before = tree_cpu_seconds(path.pid) if path.pid is not None else 0.0
    queued = queued_seconds()
    runs.times_ms.append(await measure(session, path.make_url, name, count))
    runs.queued_ms.append((queued_seconds() - queued) / count * 1000)
    if path.pid is not None:
        runs.cpu_ms.append((tree_cpu_seconds(path.pid) - before) / count * 1000)


def directory_of(gateway: Gateway, origin_base: str) -> Callable[[str], str]:
    """Gateway links for any name beside the origin's segments."""
    token_base = gateway.mint(f"{origin_base}/vod/seg_000.ts").rsplit("/", 1)[0]
    return lambda name: f"{token_base}/{name}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--origin", choices=("nginx", "in-process"), default="nginx")
    parser.add_argument(
        "--client-slice-us", type=int, default=100, help="the load generator's time slice"
    )
    args = parser.parse_args()
    with workdir() as work, contextlib.ExitStack() as stack:
        media = make_miss_media(work)
        runner = None
        origin_pid: int | None = None
        if args.origin == "nginx":
            origin_nginx = static_nginx(work / "origin", media, cold_names=True)
            stack.callback(origin_nginx.stop)
            origin_base = f"http://127.0.0.1:{origin_nginx.port}"
            origin_pid = pid_of(origin_nginx.process)
        else:
            origin = SlowOrigin(media, 0.0)
            runner = await origin.start()
            origin_base = origin.base
        nginx = Nginx(work / "nginx", free_port())
        stack.callback(nginx.stop)
        nginx.start(
            f"    location /vod/ {{ proxy_pass {origin_base}; proxy_cache edge; "
            "proxy_cache_valid 200 1h; proxy_buffering on; }"
        )
        # The floor: what a proxy process that only copies bytes adds on this machine.
        relay_port = free_port()
        relay = start_relay(relay_port, origin_base.removeprefix("http://"))
        stack.callback(relay.terminate)
        # What parsing HTTP in Python adds to that: the request line, the answer's head.
        floor_port = free_port()
        floor = start_http_floor(floor_port, origin_base.removeprefix("http://"))
        stack.callback(floor.terminate)
        gateway = Gateway(free_port(), work / "cache")
        stack.callback(gateway.stop)
        gateway.start(prefetch_segments="0")
        # As deployed with several workers or nodes: the index in Redis (its own server).
        redis_url = stack.enter_context(throwaway_redis(work / "redis"))
        shared = Gateway(free_port(), work / "cache-redis")
        stack.callback(shared.stop)
        shared.start(prefetch_segments="0", redis_url=redis_url)
        paths = {
            "origin direct": MissPath(lambda name: f"{origin_base}/vod/{name}", origin_pid),
            "bare TCP relay (the floor)": MissPath(
                lambda name: f"http://127.0.0.1:{relay_port}/vod/{name}", relay.pid
            ),
            "bare HTTP proxy in Python": MissPath(
                lambda name: f"http://127.0.0.1:{floor_port}/vod/{name}", floor.pid
            ),
            "nginx proxy_cache": MissPath(
                lambda name: f"http://127.0.0.1:{nginx.port}/vod/{name}", pid_of(nginx.process)
            ),
            "gateway": MissPath(directory_of(gateway, origin_base), pid_of(gateway.process)),
            "gateway, Redis index": MissPath(
                directory_of(shared, origin_base), pid_of(shared.process)
            ),
        }
        slices = {"short": args.client_slice_us * 1000, "default": 0}
        granted: dict[str, int] = {}  # the slice in force in each mode, as the kernel reports
        results = {
            mode: {kind: {name: Runs() for name in paths} for kind in OBJECTS} for mode in slices
        }
        try:
            async with aiohttp.ClientSession() as session:
                for path in paths.values():
                    await measure(
                        session, path.make_url, OBJECTS["1.1 MB segment"], args.requests // 4
                    )
                for round_number in range(max(2, args.rounds)):
                    for mode, nanoseconds in in_turn(list(slices.items()), round_number):
                        granted[mode] = set_scheduler_slice(nanoseconds)
                        for kind, object_name in OBJECTS.items():
                            for name, path in in_turn(list(paths.items()), round_number):
                                runs = results[mode][kind][name]
                                await measure_run(session, path, object_name, args.requests, runs)
        finally:
            set_scheduler_slice(0)
            if runner is not None:
                await runner.cleanup()
    summary = {
        kind: table(kind, results["short"][kind], results["default"][kind], granted, args)
        for kind in OBJECTS
    }
    print(f"results: {save('miss_ttfb', summary)}")


def overheads(results: dict[str, Runs]) -> dict[str, float]:
    """Each path's p50 overhead against the origin directly: the median over rounds of the
    difference within a round (so that drift between rounds is not counted)."""
    origin_p50s = [statistics.median(r) for r in results["origin direct"].times_ms]
    return {
        name: statistics.median(
            statistics.median(r) - o for r, o in zip(runs.times_ms, origin_p50s, strict=True)
        )
        for name, runs in results.items()
    }


def table(
    kind: str,
    results: dict[str, Runs],
    default: dict[str, Runs],
    granted: dict[str, int],
    args: argparse.Namespace,
) -> dict:
    print(f"\n## Cold-miss TTFB, {args.requests} distinct objects per run ({kind}), "
          f"origin: {args.origin}, load generator's slice {granted['short'] / 1000:g} µs "
          f"(default {granted['default'] / 1000:g} µs)\n")  # fmt: skip
    print("| path | p50 ms (each run) | p95 ms (each run) | p50 overhead vs origin "
          "| CPU ms per request (its process) | load generator's wait for a CPU, ms per "
          "request | overhead, wait with the default slice |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    summary = {}
    short, long = overheads(results), overheads(default)
    for name, runs in results.items():
        p50s = [statistics.median(r) for r in runs.times_ms]
        p95s = [statistics.quantiles(r, n=100)[94] for r in runs.times_ms]
        overhead = short[name]
        cpu = statistics.median(runs.cpu_ms) if runs.cpu_ms else None
        queued = statistics.median(runs.queued_ms)
        queued_default = statistics.median(default[name].queued_ms)
        summary[name] = {
            "p50_ms": p50s,
            "p95_ms": p95s,
            "overhead_ms": overhead,
            "cpu_ms": cpu,
            "client_queued_ms": queued,
            "default_slice": {"overhead_ms": long[name], "client_queued_ms": queued_default},
        }
        print(
            f"| {name} | {', '.join(f'{v:.2f}' for v in p50s)} | "
            f"{', '.join(f'{v:.2f}' for v in p95s)} | {overhead:+.2f} ms | "
            f"{'—' if cpu is None else f'{cpu:.2f}'} | {queued:.2f} | "
            f"{long[name]:+.2f} ms, {queued_default:.2f} |"
        )
    return summary


if __name__ == "__main__":
    asyncio.run(main())
