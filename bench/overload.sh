#!/usr/bin/env bash
# Overload figures (issue "Hostile input and overload"): 32 and 128 connections on the 12 MP
# `preview` path for 30 s each (wrk, loopback only). Prints requests/s, the 503 share, the
# server-side p50/p99 of admitted (200) requests from the access log, and peak RSS.
#   bash bench/overload.sh [SECONDS]      # needs wrk (installed with apt-get if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
work=bench/.work/overload
mkdir -p "$work"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
. bench/setup.sh
(cd bench/.work/engine/in && exec python3 -m http.server 18089 --bind 127.0.0.2 >/dev/null 2>&1) & origin=$!
trap 'kill $origin 2>/dev/null || true' EXIT
until curl -sf -o /dev/null http://127.0.0.2:18089/photo12_baseline.jpg; do sleep 0.05; done
url="http://127.0.0.1:13005/x.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fphoto12_baseline.jpg&preview"
# Every request a different URL (`?n=<i>` on the origin's, which it ignores): identical
# requests would share one render (coalescing) and this measures overload, not that.
cat > "$work/distinct.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/x.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fphoto12_baseline.jpg%3Fn%3D"
    .. n .. "&preview")
end
LUA

for conns in 32 128; do
  log="$work/access-$conns.log"
  MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FORMAT=json \
    MEDIA_PROXY__LOG__FILTER=access=info,warn MEDIA_PROXY__STORE__KIND=none \
    MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
    "$bin" serve --listen 127.0.0.1:13005 >"$log" 2>&1 & pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:13005/healthz; do sleep 0.05; done
  out=$(wrk -t2 -c"$conns" -d"${seconds}s" --timeout 30s -s "$work/distinct.lua" "$url")
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$log" "$conns" "$hwm" "$out" <<'PY'
import json, sys
log, conns, hwm, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ok, busy, other, ms = 0, 0, {}, []
for line in open(log):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    f = e.get("fields", e)
    if "status" not in f:
        continue
    s = f["status"]
    if s == 200:
        ok += 1; ms.append(f["total_ms"])
    elif s == 503:
        busy += 1
    else:
        other[s] = other.get(s, 0) + 1
ms.sort()
pct = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))] if ms else 0
rps = [l for l in out.splitlines() if "Requests/sec" in l][0].split()[-1]
total = ok + busy + sum(other.values())
print(f"{conns:>4} connections: {rps} req/s; {ok} ok, {busy} 503 ({100*busy/max(total,1):.1f}%), other {other or 'none'}; "
      f"admitted p50 {pct(0.5)} ms, p99 {pct(0.99)} ms, max {ms[-1] if ms else 0} ms; peak RSS {hwm/1024:.1f} MB")
PY
done
