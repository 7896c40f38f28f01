"""CPU to make HLS segments from a progressive MP4 with gateway.remux, against ffmpeg.

python bench/segment_cpu.py [--minutes 60] [--segments 50] [--target 4]

Makes (once, cached under /tmp) a 426x240 testsrc2 + sine H.264/AAC MP4 of the given length,
then measures, in this process:
- parse_moov, dump_movie / load_movie (and the blob size), plan_segments;
- per-segment CPU (time.process_time) of mux_ts and mux_fmp4 on a warm movie, for segments
  spread over the file, with their source bytes already in memory (as after the fetch);
and, as the anchor, ffmpeg on the same file:
- one process per segment: `ffmpeg -ss T -t 4 -i file -c copy -f mpegts` (child CPU time);
- `ffmpeg -c copy -f hls` over the whole file, divided by the number of segments it made.
"""

from __future__ import annotations

import argparse
import bisect
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import make_long_mp4
from gateway.remux.blob import dump_movie, load_movie
from gateway.remux.boxes import scan_top_level
from gateway.remux.fmp4 import fmp4_init, mux_fmp4
from gateway.remux.movie import parse_moov
from gateway.remux.plan import Segment, plan_segments
from gateway.remux.ts import mux_ts

PROBE = 64 * 1024


def best_of(run: Callable[[], object], repeat: int = 5) -> float:
    """Fastest wall time of `repeat` runs, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


class Spans:
    """A segment's byte ranges in memory, read back by offset (as the gateway holds them)."""

    def __init__(self, handle, segment: Segment) -> None:
        self.starts, self.data = [], []
        for offset, length in segment.ranges:
            handle.seek(offset)
            self.starts.append(offset)
            self.data.append(handle.read(length))

    def read(self, offset: int, length: int) -> bytes:
        at = bisect.bisect_right(self.starts, offset) - 1
        start = offset - self.starts[at]
        return self.data[at][start : start + length]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def child_cpu(command: list[str]) -> tuple[float, float]:
    """(CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--segments", type=int, default=50, help="segments to time")
    parser.add_argument("--ffmpeg-segments", type=int, default=5)
    parser.add_argument("--target", type=float, default=4.0)
    args = parser.parse_args()

    path = make_long_mp4(args.minutes)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(PROBE)
        moov = next(box for box in scan_top_level(head, 0, size) if box.type == "moov")
        handle.seek(moov.offset)
        moov_bytes = handle.read(moov.size)

    parse_ms = best_of(lambda: parse_moov(moov_bytes), 3)
    movie = parse_moov(moov_bytes)
    dump_ms = best_of(lambda: dump_movie(movie), 3)
    blob = dump_movie(movie)
    load_ms = best_of(lambda: load_movie(blob))
    movie = load_movie(blob)
    plan_ms = best_of(lambda: plan_segments(movie, args.target))
    plan = plan_segments(movie, args.target)
    init_ms = best_of(lambda: fmp4_init(movie))
    samples = sum(track.sample_count for track in movie.tracks)

    step = max(1, len(plan) // args.segments)
    chosen = plan[::step][: args.segments]
    cpu: dict[str, list[float]] = {"mux_ts": [], "mux_fmp4": []}
    out_bytes: dict[str, list[int]] = {"mux_ts": [], "mux_fmp4": []}
    with path.open("rb") as handle:
        for segment in chosen:
            spans = Spans(handle, segment)
            for name, mux in (("mux_ts", mux_ts), ("mux_fmp4", mux_fmp4)):
                mux(movie, segment, spans.read)  # warm up
                started = time.process_time()
                made = mux(movie, segment, spans.read)
                cpu[name].append((time.process_time() - started) * 1000)
                out_bytes[name].append(len(made))

    # The anchor: ffmpeg, one process per segment, and one HLS run over the whole file.
    ffmpeg_cpu, ffmpeg_wall = [], []
    picked = chosen[:: max(1, len(chosen) // args.ffmpeg_segments)][: args.ffmpeg_segments]
    for segment in picked:
        used, wall = child_cpu(
            ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{segment.start:.3f}",
             "-t", f"{args.target:g}", "-i", str(path), "-c", "copy", "-f", "mpegts", "-"]
        )  # fmt: skip
        ffmpeg_cpu.append(used * 1000)
        ffmpeg_wall.append(wall * 1000)
    with tempfile.TemporaryDirectory() as work:
        used, wall = child_cpu(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-c", "copy", "-f", "hls",
             "-hls_time", f"{args.target:g}", "-hls_playlist_type", "vod",
             "-hls_segment_filename", os.path.join(work, "s%05d.ts"),
             os.path.join(work, "index.m3u8")]
        )  # fmt: skip
        made = len([name for name in os.listdir(work) if name.endswith(".ts")])
    hls_per_segment = used * 1000 / made

    ts50, ts95 = statistics.median(cpu["mux_ts"]), percentile(cpu["mux_ts"], 0.95)
    f50, f95 = statistics.median(cpu["mux_fmp4"]), percentile(cpu["mux_fmp4"], 0.95)
    one50 = statistics.median(ffmpeg_cpu)
    print()
    print(f"source   {path} ({size / 1e6:.0f} MB, {movie.duration / 60:.1f} min, "
          f"{samples} samples, moov {moov.size / 1e6:.2f} MB)")  # fmt: skip
    print(f"segments {len(plan)} of ~{args.target:g} s; timed {len(chosen)} "
          f"(TS ~{statistics.median(out_bytes['mux_ts']) / 1e3:.0f} kB each)")  # fmt: skip
    print()
    print(f"{'step':<44}{'time':>12}")
    print(f"{'parse_moov':<44}{parse_ms:>9.1f} ms")
    print(f"{'dump_movie':<44}{dump_ms:>9.1f} ms")
    print(f"{'load_movie':<44}{load_ms:>9.1f} ms   blob {len(blob) / 1e3:.0f} kB "
          f"({len(blob) / samples:.1f} B/sample)")  # fmt: skip
    print(f"{'plan_segments':<44}{plan_ms:>9.1f} ms")
    print(f"{'fmp4_init':<44}{init_ms:>9.3f} ms")
    print(f"{'mux_ts CPU per segment (p50 / p95)':<44}{ts50:>9.2f} ms / {ts95:.2f} ms")
    print(f"{'mux_fmp4 CPU per segment (p50 / p95)':<44}{f50:>9.2f} ms / {f95:.2f} ms")
    print(f"{'ffmpeg -ss -t -c copy -f mpegts, per process':<44}{one50:>9.1f} ms CPU, "
          f"{statistics.median(ffmpeg_wall):.1f} ms wall ({len(picked)} runs)")  # fmt: skip
    print(f"{'ffmpeg -c copy -f hls, whole file / segments':<44}{hls_per_segment:>9.2f} ms CPU "
          f"({made} segments, {wall:.1f} s wall)")  # fmt: skip
    print()
    print("ratios (ffmpeg CPU / remux CPU per segment, higher is better for remux):")
    print(f"  one ffmpeg process per segment  / mux_ts   {one50 / ts50:8.1f}x")
    print(f"  ffmpeg HLS, whole file amortised / mux_ts  {hls_per_segment / ts50:8.1f}x")
    print(f"  ffmpeg HLS, whole file amortised / mux_fmp4 {hls_per_segment / f50:7.1f}x")


if __name__ == "__main__":
    main()
