#!/usr/bin/env bash
# Every benchmark, one after the other (about 17 minutes, plus a minute to encode the 1-hour MP4
# the first time). Results: bench/results/*.json; the last lines are the targets met or not,
# and the exit status is 0 only when every one is met (python -m bench.verdict).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m bench.rewrite
python3 -m bench.hits
python3 -m bench.lane_answer
python3 -m bench.miss_ttfb
python3 -m bench.miss_trace
python3 -m bench.prefetch_ttfb
python3 -m bench.coalescing
python3 -m bench.as_hls
python3 -m bench.as_hls --moov-last
python3 bench/segment_cpu.py
# Five rounds where a target lies within one round's noise of its line (a 5 s round moves
# about 8 % against the next): hot hits against HLS-Proxy, and X-Accel against nginx static.
python3 -m bench.anchors --rounds 5
python3 -m bench.memory
python3 -m bench.scaling
python3 -m bench.accel --rounds 5
python3 -m bench.verdict
