"""An MP4 served as HLS: cold time to first segment, and cost per made segment, against ffmpeg.

    python -m bench.as_hls [--minutes 60] [--moov-last] [--rounds 2]

nginx serves a long progressive MP4 (426x240, keyframes every 2 s) on loopback. Measured, in
alternating rounds:

- gateway, cold: a never-seen source (a fresh query string) → `index.m3u8`, `media.m3u8` and
  all of `seg-0.ts`, wall time; then cold segments from the middle of the file (index warm),
  wall time and the gateway process's CPU time per made segment; then cache hits.
- ffmpeg, the anchor: one process per segment (`-ss T -t 4 -c copy -f mpegts` over HTTP, what
  an on-the-fly segmenter built on ffmpeg would spawn), and one `-c copy -f hls` pass over the
  whole file divided by its segment count.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp

from bench.common import (
    Gateway,
    Nginx,
    cpu_seconds,
    ensure_tools,
    free_port,
    make_long_mp4,
    save,
    workdir,
)

_fresh = itertools.count()


async def fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {body[:200]!r}")
        return body


async def gateway_round(
    session: aiohttp.ClientSession, gateway: Gateway, source: str, segments: int
) -> dict[str, float]:
    index = gateway.mint(f"{source}?cold={next(_fresh)}", "--as-hls")
    base = index.removesuffix("index.m3u8")
    started = time.perf_counter()
    await fetch(session, index)
    playlist_done = time.perf_counter()
    await fetch(session, base + "media.m3u8")
    await fetch(session, base + "seg-0.ts")
    first_done = time.perf_counter()

    assert gateway.process is not None
    pid = gateway.process.pid
    numbers = sorted({(segments // 3 + 7 * i) % segments for i in range(20)})
    cpu_before = cpu_seconds(pid)
    cold = []
    for number in numbers:
        began = time.perf_counter()
        await fetch(session, f"{base}seg-{number}.ts")
        cold.append(time.perf_counter() - began)
    cpu_per_made = (cpu_seconds(pid) - cpu_before) / len(numbers)
    hits = []
    for number in numbers:
        began = time.perf_counter()
        await fetch(session, f"{base}seg-{number}.ts")
        hits.append(time.perf_counter() - began)
    return {
        "cold_index_ms": (playlist_done - started) * 1000,
        "cold_first_segment_ms": (first_done - started) * 1000,
        "cold_segment_ms": statistics.median(cold) * 1000,
        "cpu_per_made_segment_ms": cpu_per_made * 1000,
        "hit_ms": statistics.median(hits) * 1000,
    }


def ffmpeg_round(source: str, duration: float, work: Path) -> dict[str, float]:
    times = []
    for start in (duration * 0.25, duration * 0.5, duration * 0.75):
        began = time.perf_counter()
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{start:.3f}", "-i", source,
             "-t", "4", "-c", "copy", "-f", "mpegts", str(work / "one.ts")],
            check=True,
        )  # fmt: skip
        times.append(time.perf_counter() - began)
    out = work / "whole"
    out.mkdir(exist_ok=True)
    began = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", source, "-c", "copy", "-f", "hls",
         "-hls_time", "4", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(out / "s%05d.ts"), str(out / "index.m3u8")],
        check=True,
    )  # fmt: skip
    whole = time.perf_counter() - began
    count = len(list(out.glob("s*.ts")))
    return {
        "per_segment_process_ms": statistics.median(times) * 1000,
        "whole_file_per_segment_ms": whole / max(count, 1) * 1000,
    }


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--moov-last", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_tools()
    film = make_long_mp4(args.minutes, faststart=not args.moov_last)
    duration = probe_duration(film)
    segments = int(duration // 4)
    with workdir() as work:
        static = work / "static"
        static.mkdir()
        (static / "film.mp4").symlink_to(film)
        nginx = Nginx(work / "nginx", free_port())
        nginx.start(f"    location /static/ {{ root {work}; }}")
        gateway = Gateway(free_port(), work / "cache")
        gateway.start(prefetch_segments="0")
        source = f"http://127.0.0.1:{nginx.port}/static/film.mp4"
        rounds: dict[str, list[dict[str, float]]] = {"gateway": [], "ffmpeg": []}
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(args.rounds):
                    rounds["gateway"].append(
                        await gateway_round(session, gateway, source, segments)
                    )
                    rounds["ffmpeg"].append(
                        await asyncio.to_thread(ffmpeg_round, source, duration, work)
                    )
        finally:
            gateway.stop()
            nginx.stop()

    def mid(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[side])

    layout = "moov at the end" if args.moov_last else "faststart"
    size_mb = film.stat().st_size / 1e6
    print(f"\n## MP4 as HLS: {args.minutes} min, {size_mb:.0f} MB, {layout}, 4 s segments\n")
    print("| measure | gateway (each round) | ffmpeg anchor | ratio |")
    print("|---|---|---|---|")
    per_process = mid("ffmpeg", "per_segment_process_ms")
    whole = mid("ffmpeg", "whole_file_per_segment_ms")
    rows = [
        ("cold index.m3u8 (moov read and parsed)", "cold_index_ms", None),
        ("cold index + media playlist + first segment", "cold_first_segment_ms", per_process),
        ("cold segment, index warm (wall)", "cold_segment_ms", per_process),
        ("CPU per made segment (gateway process)", "cpu_per_made_segment_ms", whole),
        ("cache hit", "hit_ms", None),
    ]
    for label, key, anchor in rows:
        values = ", ".join(f"{r[key]:.1f} ms" for r in rounds["gateway"])
        if anchor is None:
            print(f"| {label} | {values} | — | — |")
        else:
            print(f"| {label} | {values} | {anchor:.1f} ms | {mid('gateway', key) / anchor:.2f}× |")
    print(
        f"\nffmpeg: one process per segment {per_process:.1f} ms; "
        f"`-c copy -f hls` of the whole file {whole:.2f} ms per segment"
    )
    print(f"results: {save('as_hls', rounds)}")


if __name__ == "__main__":
    asyncio.run(main())
