#!/usr/bin/env bash
# What a failing S3 variant cache costs an answer (issue "When the parts we depend on
# fail"): p50/p99 of uncached and cached `emoji` with the bucket healthy, hung (accepts
# connections, never answers) and refusing, one run each. moto is the bucket (installed by
# ./dev tools), a small Python TCP proxy the fault; the release binary, no memory tier.
#
#   bash bench/faults-figures.sh [N]     N requests per column (default 100)
#
# Prints a Markdown table; docs/benchmarks.md holds the latest.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/setup.sh
python3 -c 'import moto' 2>/dev/null || { echo "moto is needed (./dev tools installs it)"; exit 1; }
python3 bench/faults-figures.py "$bin" "${1:-100}" "$inputs/rgba500.png"
