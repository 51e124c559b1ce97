#!/usr/bin/env bash
# Variant cache figures (issue "Variant cache and request coalescing"): requests per second
# and server CPU per request of cached `emoji` answers (the Misskey timeline's hottest path),
# from the memory tier and from the local directory tier, beside what the same answer costs
# uncached (download + decode + encode every time). A release build, an nginx origin on
# 127.0.0.2, wrk on loopback; about a minute.
#
#   bash bench/cache-figures.sh     # needs nginx and wrk (apt-get install nginx-light wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/setup.sh
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx-light)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
work=bench/.work/cache
rm -rf "$work" && mkdir -p "$work/www" "$work/logs" "$work/cache"
# The origin's files: a 30-frame 320×320 GIF (an animated custom emoji) and a 500×500 PNG.
cp "$inputs/anim30.gif" "$inputs/rgba500.png" "$work/www/"
. bench/origin.sh
origin_start "$work" 18090
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap 'stop; origin_stop "$work"' EXIT

port=13007
start() { # env assignments for the server
  env MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=warn \
    MEDIA_PROXY__STORE__KIND=none "$@" "$bin" serve --listen 127.0.0.1:$port & pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.02; done
}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
url() { echo "http://127.0.0.1:$port/e.webp?url=http%3A%2F%2F127.0.0.2%3A18090%2F$1&emoji"; }

hits() { # label file
  local u; u=$(url "$2")
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$u")" = 200 ] # the one miss
  [ "$(curl -s -D - -o /dev/null "$u" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}')" = HIT ]
  wrk -t1 -c16 -d2s "$u" >/dev/null # warm-up
  local before; before=$(cpu)
  local out; out=$(wrk -t1 -c16 -d10s "$u")
  local after; after=$(cpu)
  local n; n=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local p50; p50=$(wrk -t1 -c16 -d3s --latency "$u" | awk '$1 == "50%" {print $2}')
  awk -v n="$n" -v d="$((after - before))" -v t="$ticks" -v rps="$rps" -v l="$1" -v p="$p50" \
    'BEGIN { printf "%-44s %9.0f req/s  %6.3f CPU-ms/request  p50 %s (wrk -c16)\n", l, rps, d * 1000 / t / n, p }'
}

uncached() { # label file n
  local u; u=$(url "$2")
  curl -sf -o /dev/null "$u"
  local before; before=$(cpu)
  for _ in $(seq "$3"); do curl -sf -o /dev/null "$u"; done
  local after; after=$(cpu)
  awk -v n="$3" -v d="$((after - before))" -v t="$ticks" -v l="$1" \
    'BEGIN { printf "%-44s %9s        %6.1f CPU-ms/request  (%d sequential requests)\n", l, "", d * 1000 / t / n, n }'
}

echo "media-proxy $(git rev-parse --short HEAD), $(nproc) cores; wrk and the server share them"
start MEDIA_PROXY__CACHE__KIND=none
hits "emoji, animated GIF, memory hit" anim30.gif
hits "emoji, 500x500 PNG, memory hit" rgba500.png
stop
start MEDIA_PROXY__CACHE__KIND=local MEDIA_PROXY__CACHE__ROOT="$work/cache" MEDIA_PROXY__CACHE__MEMORY=0
hits "emoji, animated GIF, local directory hit" anim30.gif
hits "emoji, 500x500 PNG, local directory hit" rgba500.png
stop
start MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0
uncached "emoji, animated GIF, uncached" anim30.gif 20
uncached "emoji, 500x500 PNG, uncached" rgba500.png 50
stop
