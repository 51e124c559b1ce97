#!/usr/bin/env bash
# Media-engine figures (issue "Remote mode, part 2"): server CPU milliseconds per request
# for each workload, measured from /proc/<pid>/stat around N sequential requests, and peak
# RSS while serving the 12 MP preview at 8 concurrent requests. Loopback only, bounded.
#
#   bash bench/engine-figures.sh        # needs python3 (Pillow is installed into bench/.work)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/setup.sh

(cd "$inputs" && exec python3 -m http.server 18088 --bind 127.0.0.2 >/dev/null 2>&1) & origin=$!
# Caching off: every request below renders (bench/cache-figures.sh measures the hits).
export MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 MEDIA_PROXY__STORE__KIND=none
MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=warn \
  "$bin" serve --listen 127.0.0.1:13004 & pid=$!
trap 'kill $pid $origin 2>/dev/null || true' EXIT
until curl -sf -o /dev/null http://127.0.0.1:13004/; do sleep 0.05; done
until curl -sf -o /dev/null http://127.0.0.2:18088/anim30.gif; do sleep 0.05; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
measure() { # name file flags n
  local url="http://127.0.0.1:13004/x.webp?url=http%3A%2F%2F127.0.0.2%3A18088%2F$2$3"
  for _ in 1 2 3; do curl -sf -o /dev/null "$url"; done # warm up
  local before; before=$(cpu)
  for _ in $(seq "$4"); do curl -sf -o /dev/null "$url"; done
  local after; after=$(cpu)
  awk -v n="$4" -v d="$((after - before))" -v t="$ticks" -v name="$1" \
    'BEGIN { printf "%-34s %7.1f CPU-ms/request (%d requests)\n", name, d * 1000 / t / n, n }'
}
measure "12 MP baseline JPEG -> preview" photo12_baseline.jpg "&preview" 100
measure "12 MP progressive JPEG -> preview" photo12_progressive.jpg "&preview" 100
measure "12 MP baseline JPEG -> static" photo12_baseline.jpg "&static" 100
measure "2 MP baseline JPEG -> preview" photo2_baseline.jpg "&preview" 200
measure "500x500 RGBA PNG -> emoji" rgba500.png "&emoji" 400
measure "30-frame 320x320 GIF -> emoji" anim30.gif "&emoji" 50

# Peak RSS at 8 concurrent 12 MP previews, on a fresh process (VmHWM counts from start).
kill $pid; wait $pid 2>/dev/null || true
MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=warn \
  "$bin" serve --listen 127.0.0.1:13004 & pid=$!
until curl -sf -o /dev/null http://127.0.0.1:13004/; do sleep 0.05; done
echo "idle RSS: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$pid/status)"
# Each client its own URL (`?n=` is ignored by the origin): identical requests would share
# one render.
url="http://127.0.0.1:13004/x.webp?url=http%3A%2F%2F127.0.0.2%3A18088%2Fphoto12_baseline.jpg"
clients=()
for i in $(seq 8); do
  (for _ in $(seq 10); do curl -sf -o /dev/null "$url%3Fn%3D$i&preview"; done) & clients+=($!)
done
wait "${clients[@]}"
echo "peak RSS (VmHWM) after 8 concurrent 12 MP previews: $(awk '/VmHWM/ {print $2 " kB"}' /proc/$pid/status)"
