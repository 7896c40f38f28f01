"""Why a fill creates its temp file on the event loop, not in a worker thread.

    python -m bench.thread_starvation [--files 12] [--batches 5]

A worker thread creates `--files` empty files (what the gateway's pool of temp files once did
ahead of its fills) while the event loop is idle, saturated, or busy for 0.8 ms at a time
with a short sleep between: a gateway under moderate load. Each file creation gives up the
interpreter lock for its system call and must take it back. An interpreter that waits for
the lock asks its holder to let go only if nobody else took the lock meanwhile, so an event
loop that drops it briefly at every poll and takes it again before the waiting thread has
woken up holds it out: the thread's batch then takes seconds instead of a millisecond.
Prints, for each loop pattern, how long the batches took to start and to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

PATTERNS = {"idle": None, "saturated": 0.0, "busy 0.8 ms, asleep 0.5 ms": 0.0005}


def create_all(paths: list[Path], stamps: list[tuple[float, float]]) -> list[int]:
    started = time.perf_counter()
    made = [os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644) for path in paths]
    stamps.append((started, time.perf_counter()))
    return made


async def keep_busy(stop: asyncio.Event, sleep: float) -> None:
    while not stop.is_set():
        until = time.perf_counter() + 0.0008
        while time.perf_counter() < until:
            sum(range(50))
        await asyncio.sleep(sleep)


async def batches(directory: Path, files: int, count: int, sleep: float | None) -> list[float]:
    """Milliseconds from asking for each batch to its last file, under one loop pattern."""
    stop = asyncio.Event()
    busy = asyncio.create_task(keep_busy(stop, sleep)) if sleep is not None else None
    stamps: list[tuple[float, float]] = []
    took = []
    for batch in range(count):
        paths = [directory / f"{sleep}-{batch}-{n}" for n in range(files)]
        asked = time.perf_counter()
        for fd in await asyncio.to_thread(create_all, paths, stamps):
            os.close(fd)
        took.append((stamps[-1][1] - asked) * 1000)
    stop.set()
    if busy is not None:
        await busy
    return took


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hls-bench-") as work:
        print(f"\n## {args.files} files created in a worker thread, per batch (ms)\n")
        print("| event loop | median | each |\n|---|---|---|")
        for name, sleep in PATTERNS.items():
            took = await batches(Path(work), args.files, args.batches, sleep)
            each = ", ".join(f"{ms:.1f}" for ms in took)
            print(f"| {name} | {statistics.median(took):.1f} | {each} |", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
