"""Memory per worker with 500 slow clients streaming distinct segments, against nginx.

    python -m bench.memory [--clients 500] [--segments 60] [--seconds 8] [--workers 1]
                           [--rounds 2]

Each client reads 16 KB every 50 ms (about 320 KB/s, a phone on a fair link) from a socket
with a 64 KB receive buffer, so the server holds the rest of each 1.1 MB segment itself;
client i streams `cold_<i % segments>_seg_003.ts` over and over (the origin serves every
such name from one file). The gateway's RSS is sampled from /proc every 100 ms:

- hits: every name fetched twice before the clients start (filled, then admitted to the
  RAM tier, GATEWAY_CACHE_MEMORY_BYTES, set to 64 MiB here: 60 segments are 67 MB, so a
  few are served from disk);
- cold fills: a fresh gateway and cache, so the first clients of each name drive its fill.

Each run starts a fresh gateway (Python does not give memory back, so a run would inherit
the previous one's peak). The target is peak RSS minus the RAM tier ≤ 150 MB per worker.
nginx serving the same files to the same clients is the anchor (its workers' RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    Gateway,
    alternate,
    ensure_tools,
    free_port,
    make_media,
    median,
    report,
    save,
    workdir,
)
from bench.peers import (
    PeerNginx,
    drop_redis_prefix,
    gateway_worker_pids,
    get,
    load_note,
    rss_bytes,
    rss_parts,
    sibling,
)

SEGMENT = "seg_003.ts"
RAM_TIER = 64 * 1024**2
TARGET_MB = 150
MB = 1024**2
READ_BYTES, PAUSE, RCVBUF = 16 * 1024, 0.05, 64 * 1024
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Load:
    """What the clients saw: a server that is light because it failed is no result."""

    completed: int = 0
    bytes: int = 0
    bad: int = 0  # non-200 or a body shorter than its Content-Length
    errors: int = 0  # refused, reset, unparseable
    statuses: dict[int, int] = field(default_factory=dict)


async def fetch_slowly(port: int, path: str, load: Load, deadline: float) -> None:
    """One GET, read 16 KB at a time with a pause between reads, until done or deadline."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    # A small window, so the kernel cannot soak up the whole segment for the server.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    # limit: asyncio stops reading the socket once twice `limit` bytes wait in its buffer.
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_BYTES)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        load.statuses[status] = load.statuses.get(status, 0) + 1
        length = content_length(head)
        got = 0
        while loop.time() < deadline:
            chunk = await reader.read(READ_BYTES)
            got += len(chunk)
            load.bytes += len(chunk)
            if not chunk or (length is not None and got >= length):
                break
            await asyncio.sleep(PAUSE)
        else:
            return  # the run ended mid-body: neither a success nor a failure
        if status == 200 and length is not None and got == length:
            load.completed += 1
        else:
            load.bad += 1
    finally:
        writer.close()


def content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


async def client(port: int, path: str, start: float, deadline: float, load: Load) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start - loop.time()))
    while loop.time() < deadline:
        try:
            await fetch_slowly(port, path, load, deadline)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            load.errors += 1
            await asyncio.sleep(0.1)


async def drive(
    port: int, paths: list[str], seconds: float, pids: Callable[[], list[int]]
) -> tuple[Load, list[list[dict[str, int]]]]:
    """Every client at once (ramped over 1 s: the listen backlog is small), RSS sampled."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    deadline = begin + seconds
    load = Load()
    samples: list[list[dict[str, int]]] = []

    async def sample() -> None:
        while loop.time() < deadline:
            samples.append([rss_parts(pid) for pid in pids()])
            await asyncio.sleep(0.1)

    ramp = [begin + i / len(paths) for i in range(len(paths))]
    await asyncio.gather(
        sample(), *(client(port, p, t, deadline, load) for p, t in zip(paths, ramp, strict=True))
    )
    return load, samples


def peak(samples: list[list[dict[str, int]]], key: str) -> float:
    """The largest value of one worker in any sample, in MB."""
    return max(worker[key] for sample in samples for worker in sample) / MB


def measure(
    port: int, paths: list[str], seconds: float, pids: Callable[[], list[int]]
) -> dict[str, float]:
    idle = [rss_bytes(pid) for pid in pids()]
    started = time.perf_counter()
    load, samples = asyncio.run(drive(port, paths, seconds, pids))
    elapsed = time.perf_counter() - started
    end = [rss_bytes(pid) for pid in pids()]
    return {
        "peak_worker_mb": peak(samples, "VmRSS"),
        "peak_anon_mb": peak(samples, "RssAnon"),
        "peak_file_mb": peak(samples, "RssFile"),
        "peak_total_mb": max(sum(w["VmRSS"] for w in s) for s in samples) / MB,
        "idle_worker_mb": max(idle) / MB,
        "end_worker_mb": max(end) / MB,
        "workers": float(len(idle)),
        "completed": float(load.completed),
        "mb_per_s": load.bytes / elapsed / 1e6,
        "bad": float(load.bad),
        "errors": float(load.errors),
        "non_200": float(sum(n for s, n in load.statuses.items() if s != 200)),
    }


@dataclass
class Bench:
    work: Path
    origin: str
    clients: int
    segments: int
    seconds: float
    workers: int
    runs: itertools.count = field(default_factory=itertools.count)

    def names(self) -> list[str]:
        return [f"cold_{i % self.segments}_{SEGMENT}" for i in range(self.clients)]

    def gateway(self, warm: bool) -> dict[str, float]:
        run = next(self.runs)
        gateway = Gateway(free_port(), self.work / f"cache-{run}")
        settings = {"cache_memory_bytes": str(RAM_TIER), "prefetch_segments": "0"}
        prefix = f"bench-memory-{uuid.uuid4().hex}"
        if self.workers > 1:
            settings |= {"workers": str(self.workers), "redis_url": REDIS_URL}
            settings |= {"redis_prefix": prefix}
        try:
            gateway.start(**settings)
            link = gateway.mint(f"{self.origin}/{SEGMENT}")
            base = link.removeprefix(gateway.base)
            if warm:
                for name in sorted(set(self.names())):
                    for _ in range(2):  # filled, then admitted to the RAM tier
                        status, body, _ = get(sibling(link, name))
                        if status != 200:
                            raise RuntimeError(f"warming {name}: {status} {body[:200]!r}")
            else:
                get(link)  # one request, so imports and pools are warm as with hits
            paths = [sibling(base, name) for name in self.names()]
            assert gateway.process is not None
            pid = gateway.process.pid
            return measure(gateway.port, paths, self.seconds, lambda: gateway_worker_pids(pid))
        finally:
            gateway.stop()
            if self.workers > 1:
                drop_redis_prefix(REDIS_URL, prefix)

    def nginx(self, media: Path) -> dict[str, float]:
        nginx = PeerNginx(self.work / f"nginx-{next(self.runs)}", free_port(), self.workers)
        try:
            nginx.start(nginx.static(media))
            paths = [f"/vod/{name}" for name in self.names()]
            return measure(nginx.port, paths, self.seconds, nginx.worker_pids)
        finally:
            nginx.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternations (at least 2)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    ensure_tools()
    before = load_note("before")
    with workdir() as work:
        media = make_media(work)
        origin = PeerNginx(work / "origin", free_port())
        bench = Bench(
            work,
            f"http://127.0.0.1:{origin.port}/vod",
            args.clients,
            args.segments,
            args.seconds,
            args.workers,
        )
        try:
            origin.start(origin.static(media))
            results = alternate(
                {
                    "gateway hits": lambda: bench.gateway(warm=True),
                    "gateway cold fills": lambda: bench.gateway(warm=False),
                    "nginx static": lambda: bench.nginx(media),
                },
                args.rounds,
            )
        finally:
            origin.stop()
    print(
        f"\n{args.clients} clients reading 16 KB / 50 ms, {args.segments} distinct 1.1 MB "
        f"segments, {args.seconds:g} s, {args.workers} worker(s), RAM tier {RAM_TIER // MB} MiB"
    )
    data = {
        "clients": args.clients,
        "segments": args.segments,
        "workers": args.workers,
        "ram_tier_mb": RAM_TIER / MB,
        "rss": report("Peak RSS per worker (MB)", results, "peak_worker_mb", "nginx static"),
    }
    print_verdict(results)
    data["load_before"] = before
    print(f"\nresults: {save('memory', data)}")


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return median([run[key] for run in runs])


def less_tier(name: str, peak_mb: float, tier_mb: float) -> float:
    """What the target holds a server to: its peak RSS per worker, less the RAM tier for the
    gateway (which holds up to the tier's bytes by design)."""
    return peak_mb - tier_mb if name.startswith("gateway") else peak_mb


def print_verdict(results: dict[str, list[dict[str, float]]]) -> None:
    print(
        "\n| server | idle MB | peak RSS MB (peak anon / peak mapped files) | peak − RAM tier "
        "| target | all workers, peak MB | completed bodies | MB/s to clients "
        "| bad / errors / non-200 |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, runs in results.items():
        med = functools.partial(median_of, runs)
        top = med("peak_worker_mb")
        over = less_tier(name, top, RAM_TIER / MB)
        verdict = "met" if over <= TARGET_MB else "NOT met"
        faults = "/".join(f"{sum(r[k] for r in runs):.0f}" for k in ("bad", "errors", "non_200"))
        print(
            f"| {name} | {med('idle_worker_mb'):.1f} "
            f"| {top:.1f} ({med('peak_anon_mb'):.1f} / {med('peak_file_mb'):.1f}) "
            f"| {over:.1f} | ≤ {TARGET_MB} ({verdict}) | {med('peak_total_mb'):.1f} "
            f"| {med('completed'):.0f} "
            f"| {med('mb_per_s'):.1f} | {faults} |"
        )


if __name__ == "__main__":
    main()
