#!/usr/bin/env bash
# Store-mode figures (issue "Store mode"): server CPU milliseconds per request and output
# size for a 2 MP JPEG resized to w=512 in each output format, measured from
# /proc/<pid>/stat around N sequential requests to a release build serving the deterministic
# bench inputs from a local directory store. Loopback only, bounded (a few hundred requests).
#
#   bash bench/store-figures.sh        # needs python3 (Pillow is installed into bench/.work)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/setup.sh

# Caching off: every request below renders (bench/cache-figures.sh measures the hits).
MEDIA_PROXY__STORE__ROOT="$inputs" MEDIA_PROXY__LOG__FILTER=warn \
  MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
  "$bin" serve --listen 127.0.0.1:13005 & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf -o /dev/null http://127.0.0.1:13005/; do sleep 0.05; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
chrome='image/avif,image/webp,image/apng,image/*,*/*;q=0.8'
measure() { # name path+query accept n
  local url="http://127.0.0.1:13005/$2"
  for _ in 1 2 3; do curl -sf -o /dev/null -H "Accept: $3" "$url"; done # warm up
  local bytes; bytes=$(curl -sf -H "Accept: $3" "$url" | wc -c)
  local type; type=$(curl -sf -o /dev/null -w '%{content_type}' -H "Accept: $3" "$url")
  local before; before=$(cpu)
  for _ in $(seq "$4"); do curl -sf -o /dev/null -H "Accept: $3" "$url"; done
  local after; after=$(cpu)
  awk -v n="$4" -v d="$((after - before))" -v t="$ticks" -v name="$1" -v b="$bytes" -v ty="$type" \
    'BEGIN { printf "%-40s %7.1f CPU-ms/request  %7d bytes  %-10s (%d requests)\n", name, d * 1000 / t / n, b, ty, n }'
}
measure "2 MP JPEG -> w=512 JPEG q80" "photo2_baseline.jpg?w=512&format=jpeg&q=80" "*/*" 200
measure "2 MP JPEG -> w=512 WebP (q80)" "photo2_baseline.jpg?w=512&format=webp" "*/*" 200
measure "2 MP JPEG -> w=512 AVIF (q60, speed 9)" "photo2_baseline.jpg?w=512&format=avif" "*/*" 100
measure "2 MP JPEG -> w=512 auto (Chrome Accept)" "photo2_baseline.jpg?w=512" "$chrome" 100
measure "2 MP JPEG -> d=200x200 (cover) WebP" "photo2_baseline.jpg?d=200x200&format=webp" "*/*" 200
measure "12 MP JPEG -> w=512 WebP" "photo12_baseline.jpg?w=512&format=webp" "*/*" 100
measure "30-frame GIF -> w=160 auto (WebP anim)" "anim30.gif?w=160" "image/webp" 30
measure "2 MP JPEG original (no transform)" "photo2_baseline.jpg" "*/*" 400
# A CDN revalidating a variant: If-None-Match with the ETag it holds (no decode, no encode).
url="http://127.0.0.1:13005/photo2_baseline.jpg?w=512&format=webp"
etag=$(curl -sf -D - -o /dev/null "$url" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
before=$(cpu)
for _ in $(seq 400); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$url")" = 304 ]
done
after=$(cpu)
awk -v n=400 -v d="$((after - before))" -v t="$ticks" \
  'BEGIN { printf "%-40s %7.1f CPU-ms/request  (304, %d requests)\n", "2 MP JPEG -> w=512 revalidated", d * 1000 / t / n, n }'
