#!/usr/bin/env bash
# Every benchmark, one after the other (about 5 minutes). Results: bench/results/*.json
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m bench.rewrite
python3 -m bench.hits
python3 -m bench.miss_ttfb
python3 -m bench.prefetch_ttfb
python3 -m bench.coalescing
