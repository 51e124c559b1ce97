#!/usr/bin/env bash
# Side by side, in one run on this machine: our release binary against the reference media
# proxy built on Node.js + sharp (bench/reference/server.mjs, the Misskey proxy's transforms
# and settings), under the same load, interleaved A B A B so drift cancels. Loopback only.
#
#   bash bench/run.sh [SECONDS_PER_RUN] [CONNECTIONS] [ROUNDS]     (defaults 8, 4, 2)
#   BENCH_ONLY=emoji bash bench/run.sh 4                           (only matching scenarios)
#
# Installs what it needs into ignored folders: sharp (npm, bench/reference/node_modules),
# Pillow for the inputs (bench/.work); wrk and nginx from Debian if missing. Each run starts
# the server fresh (peak RSS is per run), warms it up, drives it with wrk for the given time
# with every request a distinct URL (no cache or coalescing can answer for the engine; ours
# runs with its caches off), and reads the server's CPU time from /proc/<pid>/stat (ours: with
# its worker processes'; `ours-thread` is ours with decoding in the server's threads, to show
# what the sandbox costs).
# Prints a Markdown table, and for the emoji scenarios each server's output: its bytes and its
# SSIM against a Lanczos downscale of the source (bench/output-score.py, Pillow's decoder);
# docs/benchmarks.md holds the latest.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
conns="${2:-4}"
rounds="${3:-2}"
work=bench/.work/run
mkdir -p "$work/www" "$work/logs"
rm -f "$work/results.tsv" "$work/outputs.tsv"

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${need[@]}"
fi
PATH="$PATH:/usr/sbin"
. bench/setup.sh # the release build ($bin) and the inputs ($inputs)
[ -d bench/reference/node_modules/sharp ] || (cd bench/reference && npm ci --no-audit --no-fund --loglevel=error)

# The origin: nginx (sendfile) serving the inputs and a 50 MB file that sniffs as a GIF.
for f in "$inputs"/*; do ln -sf "$PWD/$f" "$work/www/"; done
if [ ! -s "$work/www/big50.gif" ]; then
  { printf 'GIF89a'; head -c 49999994 /dev/zero | tr '\0' 'x'; } > "$work/www/big50.gif"
fi
. bench/origin.sh
origin_start "$work" 18091
pid=
trap 'origin_stop "$work"; [ -n "$pid" ] && kill $pid 2>/dev/null || true' EXIT
until curl -sf -o /dev/null http://127.0.0.2:18091/anim30.gif; do sleep 0.05; done

# Every request its own URL: `?n=<thread>-<i>` on the origin's URL, which nginx ignores.
cat > "$work/load.lua" <<'LUA'
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local n = 0
local file = os.getenv("BENCH_FILE")
local flag = os.getenv("BENCH_FLAG") or ""
request = function()
  n = n + 1
  if file == "" then
    return wrk.format(nil, "/")
  end
  return wrk.format(nil, "/x.webp?url=http%3A%2F%2F127.0.0.2%3A18091%2F" .. file
    .. "%3Fn%3D" .. id .. "-" .. n .. flag)
end
LUA

ticks=$(getconf CLK_TCK)
start_server() { # ours|ours-thread|reference
  case "$1" in
    ours|ours-thread)
      # ours: renders in sandboxed worker processes (the default); ours-thread: in the
      # server's own threads (workers.isolation = "thread"), for the cost of isolation.
      local isolation=process; [ "$1" = ours-thread ] && isolation=thread
      MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=error \
      MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
      MEDIA_PROXY__CACHE__NEGATIVE_TTL=0s MEDIA_PROXY__STORE__KIND=none \
      MEDIA_PROXY__WORKERS__ISOLATION=$isolation \
        "$bin" serve --listen 127.0.0.1:13090 >/dev/null 2>&1 & pid=$!
      base=http://127.0.0.1:13090 ;;
    reference)
      node bench/reference/server.mjs 13091 >/dev/null 2>&1 & pid=$!
      base=http://127.0.0.1:13091 ;;
  esac
  until curl -sf -o /dev/null "$base/"; do sleep 0.02; done
}

run() { # scenario file flag server
  local scenario=$1 file=$2 flag=$3 server=$4
  start_server "$server"
  local warm="$base/"
  [ -n "$file" ] && warm="$base/x.webp?url=http%3A%2F%2F127.0.0.2%3A18091%2F$file$flag"
  for _ in 1 2 3; do curl -sf -o /dev/null "$warm"; done
  local before after out
  before=$(tree_ticks $pid)
  hwm_start $pid
  out=$(BENCH_FILE="$file" BENCH_FLAG="$flag" wrk -t1 -c"$conns" -d"${secs}s" --timeout 30s \
    --latency -s "$work/load.lua" "$base")
  after=$(tree_ticks $pid)
  local hwm; hwm=$(hwm_stop $pid)
  local ttfb=""
  if [ "$scenario" = "passthrough 50 MB" ]; then
    ttfb=$(for _ in 1 2 3 4 5; do
      curl -s -o /dev/null -w '%{time_starttransfer}\n' "$warm"; done | sort -n | sed -n 3p)
  fi
  # The emoji outputs: bytes and a score against a Lanczos downscale of the source
  # (bench/output-score.py), once per scenario and server.
  if [[ "$flag" == *emoji* ]] && ! grep -qF "$scenario	$server	" "$work/outputs.tsv" 2>/dev/null; then
    curl -sf -o "$work/out-$server.webp" "$warm"
    printf '%s\t%s\t%s\t%s\n' "$scenario" "$server" "$(stat -c %s "$work/out-$server.webp")" \
      "$("$venv/bin/python" bench/output-score.py "$inputs/$file" "$work/out-$server.webp")" \
      >> "$work/outputs.tsv"
  fi
  kill $pid; wait $pid 2>/dev/null || true; pid=
  printf '%s\n' "$out" > "$work/logs/wrk-$server.txt"
  python3 bench/wrk-parse.py "$scenario" "$server" "$((after - before))" "$ticks" "$hwm" "$ttfb" \
    <<<"$out" >> "$work/results.tsv"
}

# nginx serving the 50 MB file itself: the ceiling a passthrough is compared with.
direct() {
  local out ttfb
  out=$(BENCH_FILE="" wrk -t1 -c"$conns" -d"${secs}s" --timeout 30s --latency \
    -s /dev/stdin http://127.0.0.2:18091/big50.gif <<'LUA'
request = function() return wrk.format(nil, "/big50.gif") end
LUA
)
  ttfb=$(for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{time_starttransfer}\n' http://127.0.0.2:18091/big50.gif; done | sort -n | sed -n 3p)
  python3 bench/wrk-parse.py "passthrough 50 MB" nginx 0 "$ticks" 0 "$ttfb" <<<"$out" >> "$work/results.tsv"
}

scenarios=(
  "12 MP baseline JPEG preview|photo12_baseline.jpg|&preview"
  "12 MP progressive JPEG preview|photo12_progressive.jpg|&preview"
  "12 MP baseline JPEG static|photo12_baseline.jpg|&static"
  "500x500 RGBA PNG emoji|rgba500.png|&emoji"
  "30-frame 320x320 GIF emoji|anim30.gif|&emoji"
  "passthrough 50 MB|big50.gif|"
  "/ (bare HTTP)||"
)
echo "bench/run.sh: ${secs}s per run, $conns connections, $rounds rounds (A B A B), $(nproc) cores" >&2
for s in "${scenarios[@]}"; do
  IFS='|' read -r name file flag <<<"$s"
  # BENCH_ONLY=<part of a name> runs only the matching scenarios.
  [ -n "${BENCH_ONLY:-}" ] && [[ "$name" != *"$BENCH_ONLY"* ]] && continue
  for r in $(seq "$rounds"); do
    echo "  $name, round $r" >&2
    run "$name" "$file" "$flag" ours
    run "$name" "$file" "$flag" ours-thread
    run "$name" "$file" "$flag" reference
    [ "$name" = "passthrough 50 MB" ] && direct
  done
done
python3 bench/wrk-parse.py --table "$work/results.tsv"
if [ -s "$work/outputs.tsv" ]; then
  echo
  echo "| scenario | server | output bytes | frames | SSIM (mean, lowest frame) |"
  echo "|---|---|---|---|---|"
  while IFS=$'\t' read -r scenario server bytes frames mean lowest; do
    echo "| $scenario | $server | $bytes | $frames | $mean, $lowest |"
  done < "$work/outputs.tsv"
fi
