#!/usr/bin/env bash
# Service figures for the remote mode (issue: "Remote mode, part 1"): idle RSS, start-up to
# the first 200 on `/`, and passthrough throughput of a 100 MB file compared with fetching it
# straight from the origin (nginx, sendfile). Loopback only, bounded: about a minute.
#
#   bash bench/service-figures.sh            # needs nginx (apt-get install nginx-light) and curl
#
set -euo pipefail
cd "$(dirname "$0")/.."
work=bench/.work/service
mkdir -p "$work/www" "$work/logs"
bin=target/release/media-proxy
[ -x "$bin" ] || cargo build --release --locked
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx-light)"; exit 1; }

# 100 MB that sniffs as a GIF (the proxy decides by content), deterministic.
if [ ! -s "$work/www/big.gif" ]; then
  { printf 'GIF89a'; head -c 99999994 /dev/zero | tr '\0' 'x'; } > "$work/www/big.gif"
fi
. bench/origin.sh
origin_start "$work" 18089
trap 'origin_stop "$work"; kill $pid 2>/dev/null || true' EXIT

port=13003
# Start-up to the first 200 on /, 7 times (median; the first run after a build also pays
# for a cold page cache).
samples=()
for _ in 1 2 3 4 5 6 7; do
  start=$(date +%s%N)
  "$bin" serve --listen 127.0.0.1:$port >/dev/null 2>&1 & p=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.002; done
  end=$(date +%s%N)
  samples+=($(( (end - start) / 1000000 )))
  kill $p; wait $p 2>/dev/null || true
done
echo "start-up to first 200 on /: median $(printf '%s\n' "${samples[@]}" | sort -n | sed -n 4p) ms (samples: ${samples[*]})"
MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=warn \
  "$bin" serve --listen 127.0.0.1:$port & pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.01; done
sleep 1
echo "idle RSS: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$pid/status)"

url="http://127.0.0.2:18089/big.gif"
enc=$(printf %s "$url" | sed 's/:/%3A/g; s#/#%2F#g')
for i in 1 2 3; do
  d=$(curl -s -o /dev/null -w '%{speed_download}' "$url")
  p=$(curl -s -o /dev/null -w '%{speed_download} %{time_starttransfer}' "http://127.0.0.1:$port/big.gif?url=$enc")
  printf 'run %d: direct %6.0f MB/s   via proxy %6.0f MB/s (first byte %s s)\n' "$i" \
    "$(echo "$d" | awk '{print $1/1e6}')" "$(echo "$p" | awk '{print $1/1e6}')" "$(echo "$p" | awk '{print $2}')"
done
echo "RSS after transfers: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$pid/status)"
