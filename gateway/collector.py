"""The garbage collector in a long-running worker: what start-up made is kept out of its
full passes, and each of its pauses is timed.

A worker starts with some 66,000 objects the collector tracks (modules, classes, functions,
the app), and a full collection walks every one of them, while every client of the worker
waits: 34-54 ms for those alone on the benchmark machine. They live as long as the
process, so before it accepts a connection they move to the collector's permanent
generation (`gc.freeze`), and full passes walk only what was made since (with 20,000-30,000
objects cached, 31 ms against 67: `python -m bench.gc_pauses`). Reference counting still
frees frozen objects; only a reference cycle through one is never collected, so what can
leak is bounded by what start-up made.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

# generation ("0", "1", "2") and seconds paused.
PauseSink = Callable[[str, float], None]


def freeze_startup_objects() -> int:
    """Free what start-up left as garbage, then move every object left to the permanent
    generation. Returns how many objects full collections now skip."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseTimer:
    """Times each collection of this process while installed, and hands it to `sink`.

    `sink` runs inside the collector: it must not take a lock that the interrupted code
    could hold (prometheus-client's metrics do), so it should only append to a list."""

    def __init__(self, sink: PauseSink) -> None:
        self._sink = sink
        self._started: float | None = None

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def remove(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self._sink(str(info["generation"]), time.perf_counter() - self._started)
            self._started = None
