"""Two gateway workers against one (both on the Redis index), nginx with 2 and 1 workers as
the anchor, on the RAM-hit segment and the cached 1,000-segment playlist.

    python -m bench.scaling [--seconds 5] [--connections 64] [--threads 2] [--rounds 2]

wrk needs CPU too: on a 2-core machine, wrk's threads and the servers' workers share the
two cores, so no server can reach 2x; nginx's own 2/1 ratio is the ceiling the gateway's is
measured against. nginx with 2 workers listens with `reuseport` (its best case). The
gateway's workers share one listening socket: the CPU each worker used during a run shows
how evenly the kernel spread the connections.
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from collections.abc import Callable

from bench.common import (
    Gateway,
    alternate,
    cpu_seconds,
    ensure_tools,
    free_port,
    make_media,
    median,
    report,
    save,
    workdir,
    wrk,
    wrk_options,
)
from bench.peers import (
    PeerNginx,
    drop_redis_prefix,
    flag_errors,
    gateway_worker_pids,
    get,
    load_note,
    print_latency,
    print_ratios,
)

SEGMENT = "seg_003.ts"
REDIS_URL = "redis://127.0.0.1:6379/0"


def warm(url: str) -> None:
    """New connections each time, so every worker fills its RAM tier (a second hit admits)."""
    for _ in range(12):
        status, body, _ = get(url)
        if status != 200:
            raise RuntimeError(f"{url}: {status} {body[:200]!r}")


def main() -> None:
    parser = wrk_options(connections=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ensure_tools()
    before = load_note("before")
    with workdir() as work, contextlib.ExitStack() as stack:
        media = make_media(work)
        nginx1 = PeerNginx(work / "nginx-1w", free_port(), workers=1)
        nginx2 = PeerNginx(work / "nginx-2w", free_port(), workers=2)
        gateways = {n: Gateway(free_port(), work / f"cache-{n}w") for n in (1, 2)}
        prefixes = {n: f"bench-scaling-{uuid.uuid4().hex}" for n in gateways}
        # Registered before anything starts, so a failed start still stops the rest; the
        # stack unwinds last-in first-out: servers stop, then their Redis keys go.
        for prefix in prefixes.values():
            stack.callback(drop_redis_prefix, REDIS_URL, prefix)
        for server in (nginx1, nginx2, *gateways.values()):
            stack.callback(server.stop)
        nginx1.start(nginx1.static(media))
        nginx2.start(nginx2.static(media))
        for n, gateway in gateways.items():
            gateway.start(
                workers=str(n),
                redis_url=REDIS_URL,
                redis_prefix=prefixes[n],
                cache_memory_bytes="64MiB",
            )
        origin = f"http://127.0.0.1:{nginx1.port}/vod"
        data = bench(nginx1, nginx2, gateways, origin, args)
        data["load_before"] = before
        print(f"\nresults: {save('scaling', data)}")


def bench(
    nginx1: PeerNginx,
    nginx2: PeerNginx,
    gateways: dict[int, Gateway],
    origin: str,
    args: argparse.Namespace,
) -> dict[str, object]:
    splits: dict[str, list[list[float]]] = {}

    def run(name: str, url: str, pids: Callable[[], list[int]]) -> Callable[[], dict[str, float]]:
        def once() -> dict[str, float]:
            before = {pid: cpu_seconds(pid) for pid in pids()}
            result = wrk(
                url, threads=args.threads, connections=args.connections, seconds=args.seconds
            )
            used = [cpu_seconds(pid) - start for pid, start in before.items()]
            splits.setdefault(name, []).append(used)
            return result

        return once

    workloads: dict[str, dict[str, Callable[[], dict[str, float]]]] = {}
    for kind, path in (("segment", SEGMENT), ("playlist", "long.m3u8")):
        runs = {
            "nginx 1 worker": run(
                f"nginx 1 {kind}", f"http://127.0.0.1:{nginx1.port}/vod/{path}", nginx1.worker_pids
            ),
            "nginx 2 workers": run(
                f"nginx 2 {kind}", f"http://127.0.0.1:{nginx2.port}/vod/{path}", nginx2.worker_pids
            ),
        }
        for n, gateway in gateways.items():
            link = gateway.mint(f"{origin}/{path}")
            warm(link)
            pid = gateway.process.pid  # type: ignore[union-attr]
            runs[f"gateway {n} worker{'s' if n > 1 else ''}"] = run(
                f"gateway {n} {kind}", link, lambda pid=pid: gateway_worker_pids(pid)
            )
        workloads[kind] = runs
    results = {kind: alternate(runs, args.rounds) for kind, runs in workloads.items()}
    print(
        f"\nsegment 1.1 MB (RAM tier), playlist 1,000 segments; Redis index for both gateways; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s"
    )
    data: dict[str, object] = {"cpu_per_worker_s": splits}
    for kind, title in (("segment", "Segment RAM hit"), ("playlist", "Cached rewritten playlist")):
        data[kind] = summary = report(f"{title} (req/s)", results[kind], "rps", "nginx 1 worker")
        print_ratios(summary, "gateway 1 worker")
        flag_errors(results[kind])
        print_scaling(summary, splits, kind)
        print_latency(results[kind])
    return data


def print_scaling(
    summary: dict[str, object], splits: dict[str, list[list[float]]], kind: str
) -> None:
    def rps(name: str) -> float:
        return summary[name]["median"]  # type: ignore[index,no-any-return]

    print(
        f"\n2 workers / 1 worker: nginx {rps('nginx 2 workers') / rps('nginx 1 worker'):.2f}×, "
        f"gateway {rps('gateway 2 workers') / rps('gateway 1 worker'):.2f}×"
    )
    for name in (f"nginx 2 {kind}", f"gateway 2 {kind}"):
        shares = [f"{max(u) / sum(u):.0%}" for u in splits.get(name, []) if sum(u) > 0]
        cpu = median([sum(u) for u in splits.get(name, [])])
        print(f"{name}: busiest worker's share of CPU per run {', '.join(shares)}; "
              f"CPU {cpu:.1f} s per {kind} run")  # fmt: skip


if __name__ == "__main__":
    main()
