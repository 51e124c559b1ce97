#!/usr/bin/env bash
# Video thumbnails side by side, in one run on this machine: our release binary's
# `thumbnail` (the frame at 5 %, read by range) against the usual generator approach —
# download the whole file, `ffmpeg -ss <5 %> -i file -frames:v 1`, scale into 498×422,
# WebP — on the same files from the same nginx origin (loopback, sendfile, ranges).
#
#   bash bench/video-figures.sh [N]       N thumbnails per file and approach (default 8)
#
# Per file: CPU-ms per thumbnail (ours: the server's utime+stime from /proc; theirs: curl +
# ffmpeg, user+system from /usr/bin/time), bytes the origin sent per thumbnail (nginx's
# access log), time to answer (median wall time). Then the server's peak RSS after 8
# thumbnails at once, and the same thumbnails under the Lambda runtime emulator at 256 MB.
# Every request its own URL (`?n=`), so no cache or coalescing answers for the work.
# Inputs are made once with ffmpeg into bench/.work/video (60 s each, about 30–60 MB).
# Prints a Markdown table; docs/benchmarks.md holds the latest.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-8}"
work=bench/.work/video
www="$work/www"
mkdir -p "$www" "$work/logs" "$work/out"
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (./dev tools installs it)"; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is needed"; exit 1; }
PATH="$PATH:/usr/sbin"
. bench/setup.sh # the release build ($bin) and the engine inputs (the Lambda figures use them)

make_input() {
  local name=$1; shift
  [ -s "$www/$name" ] && return 0
  echo "making $name" >&2
  ffmpeg -v error -nostdin -y -f lavfi -i "$1" -vf noise=alls=8:allf=t "${@:2}" "$www/.$name"
  mv "$www/.$name" "$www/$name"
}
# A keyframe every 2 s, as phone and fediverse uploads usually have.
make_input h264_720p.mp4 testsrc2=s=1280x720:r=30:d=60 -c:v libx264 -preset veryfast \
  -g 60 -b:v 4M -pix_fmt yuv420p
make_input h264_1080p_faststart.mp4 testsrc2=s=1920x1080:r=30:d=60 -c:v libx264 \
  -preset veryfast -g 60 -b:v 8M -pix_fmt yuv420p -movflags +faststart
make_input vp9_720p.webm testsrc2=s=1280x720:r=30:d=60 -c:v libvpx-vp9 -deadline realtime \
  -cpu-used 8 -g 60 -b:v 4M

# The origin: nginx with an access log of the bytes it sent.
cat > "$work/nginx.conf" <<NGX
worker_processes 1;
error_log $PWD/$work/logs/error.log;
pid $PWD/$work/nginx.pid;
events { worker_connections 512; }
http { sendfile on; keepalive_requests 100000;
  log_format sent '\$body_bytes_sent \$uri';
  access_log $PWD/$work/logs/access.log sent;
  types { video/mp4 mp4; video/webm webm; }
  server { listen 127.0.0.2:18093; root $PWD/$www; } }
NGX
[ -s "$work/nginx.pid" ] && { nginx -c "$PWD/$work/nginx.conf" -s stop 2>/dev/null || true; sleep 0.5; }
: > "$work/logs/access.log"
nginx -c "$PWD/$work/nginx.conf"
port=13093
pid=
stop_all() {
  nginx -c "$PWD/$work/nginx.conf" -s stop 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
}
trap stop_all EXIT
until curl -sf -o /dev/null -r 0-0 "http://127.0.0.2:18093/h264_720p.mp4"; do sleep 0.05; done

start_server() {
  MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FILTER=warn \
  MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
    "$bin" serve --listen 127.0.0.1:$port >/dev/null 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.01; done
}
cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; }  # clock ticks of 10 ms
sent_bytes() { awk -v f="/$1" '$2 == f {s += $1} END {print s + 0}' "$work/logs/access.log"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
enc() { printf %s "$1" | sed 's/%/%25/g; s/:/%3A/g; s#/#%2F#g; s/?/%3F/g; s/=/%3D/g'; }

start_server
echo "| file | size | approach | CPU-ms / thumbnail | bytes read / thumbnail | time to answer (median) |"
echo "|---|---|---|---|---|---|"
for f in h264_720p.mp4 h264_1080p_faststart.mp4 vp9_720p.webm; do
  size=$(stat -c %s "$www/$f")
  duration=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$www/$f")
  at=$(awk -v d="$duration" 'BEGIN {printf "%.3f", d * 0.05}')
  # Warm-up (page cache, the server's first connection), not counted.
  curl -sf -o /dev/null "http://127.0.0.1:$port/t.webp?thumbnail=1&url=$(enc "http://127.0.0.2:18093/$f?n=warm")"
  : > "$work/logs/access.log"
  before=$(cpu_ms "$pid")
  walls=()
  for i in $(seq "$n"); do
    url="http://127.0.0.1:$port/t.webp?thumbnail=1&url=$(enc "http://127.0.0.2:18093/$f?n=$i")"
    walls+=("$(curl -sf -o "$work/out/ours.webp" -w '%{time_total}' "$url")")
  done
  used=$(( $(cpu_ms "$pid") - before ))
  ours_bytes=$(( $(sent_bytes "$f") / n ))
  printf '| %s | %.1f MB | media-proxy `thumbnail` (ranges) | %d | %d | %.0f ms |\n' "$f" \
    "$(awk -v s="$size" 'BEGIN {print s / 1e6}')" $(( used / n )) "$ours_bytes" \
    "$(printf '%s\n' "${walls[@]}" | median | awk '{print $1 * 1000}')"

  : > "$work/logs/access.log"
  : > "$work/out/times"
  for i in $(seq "$n"); do
    # Wall and CPU time (user + system, both programs) of one thumbnail.
    /usr/bin/time -f '%e %U %S' -a -o "$work/out/times" bash -c "
      curl -sf -o '$work/out/whole' 'http://127.0.0.2:18093/$f?n=$i' &&
      ffmpeg -v error -nostdin -y -ss $at -i '$work/out/whole' -frames:v 1 \
        -vf scale=w=498:h=422:force_original_aspect_ratio=decrease -c:v libwebp \
        -quality 77 '$work/out/theirs.webp'"
  done
  theirs_bytes=$(( $(sent_bytes "$f") / n ))
  printf '| | | download + `ffmpeg -ss` + scale | %.0f | %d | %.0f ms |\n' \
    "$(awk '{s += $2 + $3} END {print s * 1000 / NR}' "$work/out/times")" "$theirs_bytes" \
    "$(awk '{print $1}' "$work/out/times" | median | awk '{print $1 * 1000}')"
done

# Peak RSS: a fresh server, 8 thumbnails of the 1080p file at once.
kill "$pid"; wait "$pid" 2>/dev/null || true
start_server
idle=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
seq 8 | xargs -P 8 -I{} curl -sf -o /dev/null \
  "http://127.0.0.1:$port/t.webp?thumbnail=1&url=$(enc "http://127.0.0.2:18093/h264_1080p_faststart.mp4?n=")p{}"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo
echo "peak RSS, 8 thumbnails of h264_1080p_faststart.mp4 at once: $(( peak / 1024 )) MiB (idle $(( idle / 1024 )) MiB)"
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=

# The same under the Lambda runtime emulator (tests/api/lambda.rs), 256 MB of function memory.
export MEDIA_PROXY_BENCH_INPUTS="$PWD/bench/.work/engine/in"
MEDIA_PROXY_BENCH_VIDEO_ORIGIN=http://127.0.0.2:18093 cargo test --release --locked -p media-proxy \
  --test api lambda::figures -- --ignored --nocapture --test-threads 1 2>&1 | grep -E "^video "
