#!/usr/bin/env bash
# Lambda figures for docs/deploy-aws.md: cold start (process start → first answered
# invocation, 15 runs) and peak RSS of a 12 MP JPEG `preview`, with the release binary in
# Lambda mode against the in-test Runtime API emulator (tests/api/lambda.rs). Loopback only.
# MEDIA_PROXY_LAMBDA_BIN=<binary> measures another build (an older commit's, for a before
# and after).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/setup.sh   # the release build and the deterministic inputs
export MEDIA_PROXY_BENCH_INPUTS="$PWD/$inputs"
cargo test --release --locked -p media-proxy --test api lambda::figures \
  -- --ignored --nocapture --test-threads 1 2>&1 | grep -E "cold start|warm|under the Lambda runtime|test result"
