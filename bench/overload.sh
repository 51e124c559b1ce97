#!/usr/bin/env bash
# Overload figures (issue "Hostile input and overload"): 32 and 128 connections on the 12 MP
# `preview` path for 30 s each (wrk, loopback only). Prints requests/s, the 503 share, the
# server-side p50/p99 of admitted (200) requests from the access log, and peak RSS.
# Then the mixed attack (issue 18): normal `preview` traffic at 4 connections alone, then
# the same with attackers beside it — costly SVGs (1,000 circles via nested `<use>`), `emoji`
# of a 100 MB body, 300 slow-header connections and far `Range`s on an origin without range
# support — under a 256 MiB memory budget: the normal requests' p99 and the peak RSS (the
# server's and its worker processes' VmHWM added up).
# A third mixed phase repeats the attack against the recommended public setup.
#   bash bench/overload.sh [SECONDS]      # needs wrk (installed with apt-get if missing)
#   OVERLOAD_CONNS= bash bench/overload.sh 20   # the mixed attack only
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
work=bench/.work/overload
mkdir -p "$work"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
. bench/setup.sh
# The origin (nginx, sendfile; `max_ranges 0`: it ignores Range, as many origins do) and
# its files: the benchmark photo, a 100 MB body and the costly SVG.
. bench/origin.sh
site="$work/www"
mkdir -p "$site"
cp -f bench/.work/engine/in/photo12_baseline.jpg "$site/photo12_baseline.jpg"
[ -s "$site/big.gif" ] || python3 - "$site/big.gif" <<'PY'
import sys
gif = bytes.fromhex("4749463839610100010080000000000000ffffff2c00000000010001000002024401003b")
with open(sys.argv[1], "wb") as f:
    f.write(gif + bytes(100_000_000 - len(gif)))
PY
python3 - "$site/bomb.svg" <<'PY'
import sys
defs = '<circle id="l0" cx="1024" cy="1024" r="1000" fill="red" fill-opacity="0.5"/>'
for level in range(1, 4):
    defs += f'<g id="l{level}">' + f'<use href="#l{level-1}"/>' * 10 + '</g>'
open(sys.argv[1], "w").write('<svg xmlns="http://www.w3.org/2000/svg" width="2048" height="2048">'
                             f'<defs>{defs}</defs><use href="#l3"/></svg>')
PY
origin_start "$work" 18089 "max_ranges 0;"
trap 'origin_stop "$work"' EXIT
until curl -sf -o /dev/null http://127.0.0.2:18089/photo12_baseline.jpg; do sleep 0.05; done
url="http://127.0.0.1:13005/x.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fphoto12_baseline.jpg&preview"
# Every request a different URL (`?n=<i>` on the origin's, which it ignores): identical
# requests would share one render (coalescing) and this measures overload, not that.
cat > "$work/distinct.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  -- Normal clients are many (only a trusted CDN's header tells them apart, and only where
  -- the server is told to believe it: the public phase of the mixed attack).
  return wrk.format(nil, "/x.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fphoto12_baseline.jpg%3Fn%3D"
    .. n .. "&preview", { ["CF-Connecting-IP"] = "198.51.100." .. (n % 250) })
end
LUA

for conns in ${OVERLOAD_CONNS-32 128}; do
  log="$work/access-$conns.log"
  MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FORMAT=json \
    MEDIA_PROXY__LOG__FILTER=access=info,warn MEDIA_PROXY__STORE__KIND=none \
    MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
    "$bin" serve --listen 127.0.0.1:13005 >"$log" 2>&1 & pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:13005/healthz; do sleep 0.05; done
  hwm_start $pid
  out=$(wrk -t2 -c"$conns" -d"${seconds}s" --timeout 30s -s "$work/distinct.lua" "$url")
  hwm=$(hwm_stop $pid) # the server's and its worker processes' peaks, added up
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$log" "$conns" "$hwm" "$out" <<'PY'
import sys
sys.path.insert(0, "bench")
from access_log import access_lines
log, conns, hwm, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ok, busy, other, ms = 0, 0, {}, []
for f in access_lines(log):
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

# The mixed attack: normal traffic alone, then with the attackers beside it.
cat > "$work/attack.lua" <<'LUA'
local n = 0
local attacker = { ["CF-Connecting-IP"] = "203.0.113.66" }
request = function()
  n = n + 1
  local kind = n % 3
  if kind == 0 then
    return wrk.format(nil, "/a.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fbomb.svg%3Fn%3D" .. n, attacker)
  elseif kind == 1 then
    return wrk.format(nil, "/a.webp?url=http%3A%2F%2F127.0.0.2%3A18089%2Fbig.gif%3Fn%3D" .. n .. "&emoji", attacker)
  else
    return wrk.format("GET", "/a.gif?url=http%3A%2F%2F127.0.0.2%3A18089%2Fbig.gif%3Fn%3D" .. n,
      { ["Range"] = "bytes=99999999-", ["CF-Connecting-IP"] = "203.0.113.66" })
  end
end
LUA
# `public`: the same attack against the recommended public setup (docs/operations.md):
# per-client fetch rate limit by the CDN's client header, a passthrough size cap, and
# `max_size` at 50 MB.
for phase in alone attacked public; do
  log="$work/access-mixed-$phase.log"
  public=()
  if [ "$phase" = public ]; then
    public=(MEDIA_PROXY__REMOTE__RATE_LIMIT=120 MEDIA_PROXY__REMOTE__RATE_BURST=60
      MEDIA_PROXY__REMOTE__CLIENT_ADDRESS=cloudflare MEDIA_PROXY__MAX_SIZE=52428800
      MEDIA_PROXY__REMOTE__PASSTHROUGH_MAX_SIZE=52428800)
  fi
  env "${public[@]}" MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=127.0.0.2/32 MEDIA_PROXY__LOG__FORMAT=json \
    MEDIA_PROXY__LOG__FILTER=access=info,warn MEDIA_PROXY__STORE__KIND=none \
    MEDIA_PROXY__CACHE__KIND=none MEDIA_PROXY__CACHE__MEMORY=0 \
    MEDIA_PROXY__WORKERS__MEMORY_BUDGET=268435456 \
    "$bin" serve --listen 127.0.0.1:13005 >"$log" 2>&1 & pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:13005/healthz; do sleep 0.05; done
  hwm_start $pid
  attackers=()
  if [ "$phase" != alone ]; then
    # 300 connections that send half a request head and then nothing.
    python3 - "$seconds" <<'PY' & attackers+=($!)
import socket, sys, time
socks = []
for _ in range(300):
    s = socket.create_connection(("127.0.0.1", 13005))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
time.sleep(int(sys.argv[1]) + 2)
PY
    wrk -t1 -c4 -d"${seconds}s" --timeout 30s -s "$work/attack.lua" http://127.0.0.1:13005/ \
      >"$work/attack-wrk.txt" 2>&1 & attackers+=($!)
  fi
  out=$(wrk -t1 -c4 -d"${seconds}s" --timeout 30s -s "$work/distinct.lua" "$url")
  for a in "${attackers[@]}"; do wait "$a" 2>/dev/null || true; done
  hwm=$(hwm_stop $pid) # the server's and its worker processes' peaks, added up
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$log" "$phase" "$hwm" "$out" <<'PY'
import sys
sys.path.insert(0, "bench")
from access_log import access_lines
log, phase, hwm, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
normal, attack = [], {}
for f in access_lines(log):
    # The normal requests are the `preview`s; everything else is the attackers'.
    if f.get("kind") == "preview":
        normal.append((f["status"], f["total_ms"]))
    else:
        key = f"{f.get('kind')} {f['status']}"
        attack[key] = attack.get(key, 0) + 1
ok = sorted(ms for s, ms in normal if s == 200)
other = len(normal) - len(ok)
pct = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] if ok else 0
rps = [l for l in out.splitlines() if "Requests/sec" in l][0].split()[-1]
print(f"mixed, {phase:>8}: normal {rps} req/s, {len(ok)} ok, {other} not ok; p50 {pct(0.5)} ms, "
      f"p99 {pct(0.99)} ms; attackers {attack or 'none'}; peak RSS {hwm/1024:.1f} MB (budget 256 MiB)")
PY
done
