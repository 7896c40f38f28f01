"""The performance targets, checked against the newest results of each benchmark.

    python -m bench.verdict [--results bench/results]

One row per target: the figure, the line it must reach, met or not, and the results file it
comes from (the newest `<benchmark>-<time>.json`). A benchmark that has not run leaves its
targets unknown, and unknown is not met. `bench/run_all.sh` ends with this, so a whole run
states its own outcome; the exit status is 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.accel import TARGET as ACCEL_LINE
from bench.common import RESULTS
from bench.cpu_quota import HELD_CORES
from bench.memory import TARGET_MB as MEMORY_LINE_MB
from bench.memory import less_tier

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    name: str
    benchmark: str  # the results file's prefix
    figure: Callable[[Results], float]
    at_least: bool  # met when the figure is >= the line (else <=)
    line: float
    unit: str = "×"


def _median(results: Results, table: str, row: str) -> float:
    return float(results[table][row]["median"])


def ratio(table: str, row: str, to: str) -> Callable[[Results], float]:
    """The median of `row` over the median of `to`, in the report `table`."""
    return lambda results: _median(results, table, row) / _median(results, table, to)


def value(*keys: str) -> Callable[[Results], float]:
    """The number at `keys` in the results."""

    def read(results: Results) -> float:
        for key in keys:
            results = results[key]
        return float(results)  # type: ignore[arg-type]

    return read


def _rewrite_worst(results: Results) -> float:
    return max(results[key] for key in ("hls_kept_ms", "hls_every_ms", "hls_absolute_ms"))


def _memory_over_tier(results: Results) -> float:
    tier = float(results["ram_tier_mb"])
    gateways = [row for row in results["rss"] if row.startswith("gateway")]
    return max(less_tier(row, _median(results, "rss", row), tier) for row in gateways)


def _coalesced(results: Results) -> float:
    if results["upstream_requests"] != 1:
        return float("inf")  # more than one upstream request misses the target outright
    return float(results["last_s"]) / float(results["transfer_s"])


MS, MB = " ms", " MB"
TARGETS = (
    Target("hot hits, RAM tier, vs nginx static", "hits",
           ratio("hits", "gateway RAM hit", "nginx static"), at_least=True, line=1.0),
    # Held to the same CPU: unheld, one wrk thread is the limit and the two tie (bench.cpu_quota).
    Target(f"hot hits vs HLS-Proxy, each held to {HELD_CORES:g} of a core", "anchors",
           ratio("hits_held", "gateway RAM hit", "HLS-Proxy cache hit"), at_least=True, line=1.0),
    Target("disk hits vs nginx static", "hits",
           ratio("hits", "gateway disk hit", "nginx static"), at_least=True, line=0.8),
    Target("cached VOD playlist vs nginx raw file", "hits",
           ratio("playlists", "gateway rewritten playlist", "nginx raw playlist"),
           at_least=True, line=0.4),
    Target("cold miss TTFB overhead, 1.1 MB, p50", "miss_ttfb",
           value("1.1 MB segment", "gateway", "overhead_ms"), at_least=False, line=0.5, unit=MS),
    Target("coalescing, last client / origin transfer", "coalescing", _coalesced,
           at_least=False, line=1.2),
    Target("peak RSS per worker less the RAM tier", "memory", _memory_over_tier,
           at_least=False, line=MEMORY_LINE_MB, unit=MB),
    Target("10k-segment rewrite", "rewrite", _rewrite_worst, at_least=False, line=10, unit=MS),
    Target("5k-entry MPD rewrite", "rewrite", value("mpd_ms"), at_least=False, line=50, unit=MS),
    Target("X-Accel hits behind nginx vs nginx static", "accel",
           ratio("segments", "nginx → gateway X-Accel hit", "nginx static"),
           at_least=True, line=ACCEL_LINE),
)  # fmt: skip


def newest(results_dir: Path, benchmark: str) -> Path | None:
    """The newest results file of `benchmark` (names end in a sortable time)."""
    found = sorted(results_dir.glob(f"{benchmark}-*.json"))
    return found[-1] if found else None


def check(target: Target, results_dir: Path) -> tuple[float | None, bool, str]:
    """The figure, whether it meets the line, and where it was read."""
    path = newest(results_dir, target.benchmark)
    if path is None:
        return None, False, f"no {target.benchmark} results"
    try:
        figure = target.figure(json.loads(path.read_text()))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return None, False, f"{path.name}: {type(exc).__name__} {exc}"
    meets = (operator.ge if target.at_least else operator.le)(figure, target.line)
    return figure, meets, path.name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    print("\n## Targets\n")
    print("| target | figure | line | met | results |\n|---|---|---|---|---|")
    met = 0
    for target in TARGETS:
        figure, meets, source = check(target, args.results)
        shown = "—" if figure is None else f"{figure:.2f}{target.unit}"
        line = f"{'≥' if target.at_least else '≤'} {target.line:g}{target.unit}"
        print(f"| {target.name} | {shown} | {line} | {'yes' if meets else 'NO'} | {source} |")
        met += meets
    print(f"\n{met} of {len(TARGETS)} targets met")
    return 0 if met == len(TARGETS) else 1


if __name__ == "__main__":
    sys.exit(main())
