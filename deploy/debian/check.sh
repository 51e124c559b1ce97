#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg -i and serves requests with
# the installed files: /usr/bin/media-proxy, /etc/media-proxy/media-proxy.toml (the commented
# sample settings) and the systemd unit (checked with systemd-analyze verify). Then removes
# it again. Run by .ci/run; by hand: `bash deploy/debian/check.sh` (as root, or with sudo).
#
# (This directory is also cargo-deb's `maintainer-scripts`: it has none of its own, the
# systemd unit's scripts are generated.)
#
# Without systemd as PID 1 (a container, CI) the unit cannot be started here: the installed
# binary is run the way the unit runs it (its ExecStart, in a state directory as
# WorkingDirectory), then systemd-check.sh boots a container whose systemd starts the unit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/debian/lib.sh

# Pinned: the package layout (assets, conffiles, generated unit scripts) is what was checked.
CARGO_DEB_VERSION=3.8.0

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi

echo "==> cargo deb (a release build)"
cargo deb --locked -p media-proxy
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
deb=$(ls -t "$target_dir"/debian/media-proxy_*.deb | head -1)
echo "built $deb"

echo "==> contents"
dpkg-deb --info "$deb"
listing=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/media-proxy ./etc/media-proxy/media-proxy.toml \
  ./usr/lib/systemd/system/media-proxy.service ./usr/share/doc/media-proxy/README.md \
  ./usr/share/doc/media-proxy/docs/configuration.md \
  ./usr/share/doc/media-proxy/examples/nginx.conf; do
  grep -q " $path\$" <<<"$listing" || { echo "missing in the package: $path" >&2; exit 1; }
done
control=$(mktemp -d)
dpkg-deb -e "$deb" "$control"
grep -qx /etc/media-proxy/media-proxy.toml "$control/conffiles" \
  || { echo "the settings are not a conffile" >&2; exit 1; }
# A stripped binary (its line tables are in the -dbgsym package).
size=$(awk '$6 == "./usr/bin/media-proxy" { print $3 }' <<<"$listing")
[ "$size" -lt 60000000 ] || { echo "the packaged binary is not stripped ($size bytes)" >&2; exit 1; }

echo "==> the -dbgsym package holds the binary's line tables, under its build ID"
ddeb=$(ls -t "$target_dir"/debian/media-proxy-dbgsym_*.ddeb | head -1)
unpacked=$(mktemp -d)
dpkg-deb -x "$deb" "$unpacked"
# readelf: binutils, which the C compiler the build needs brings.
build_id=$(readelf -n "$unpacked/usr/bin/media-proxy" | sed -n 's/^ *Build ID: *//p')
[ -n "$build_id" ] || { echo "the packaged binary has no build ID" >&2; exit 1; }
debug_file="usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug"
dpkg-deb -x "$ddeb" "$unpacked"
[ -f "$unpacked/$debug_file" ] \
  || { dpkg-deb --contents "$ddeb"; echo "no $debug_file in $ddeb" >&2; exit 1; }
sections=$(readelf -S "$unpacked/$debug_file" 2>/dev/null)
grep -q '\.debug_line' <<<"$sections" || { echo "$debug_file has no line tables" >&2; exit 1; }
echo "build ID $build_id: /$debug_file, with line tables"

echo "==> dpkg -i"
"${sudo[@]}" dpkg -i "$deb"
trap '"${sudo[@]}" dpkg --purge media-proxy >/dev/null 2>&1 || true' EXIT
unit=/usr/lib/systemd/system/media-proxy.service
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$unit"
fi
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "${exec_start%% *}" = /usr/bin/media-proxy ] \
  || { echo "the unit runs ${exec_start%% *}, not the installed binary" >&2; exit 1; }
/usr/bin/media-proxy --version
/usr/bin/media-proxy check-config /etc/media-proxy/media-proxy.toml >/dev/null

echo "==> serving with the installed files"
state=$(mktemp -d)
mkdir -p "$state/media"
make_original "$state/media/cat.png"
port=$(free_port)
base="http://127.0.0.1:$port"
# The unit's command line, with the port moved off 3003; the log goes to a file (no colours).
(cd "$state" && exec ${exec_start} --listen "127.0.0.1:$port") >"$state/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; "${sudo[@]}" dpkg --purge media-proxy >/dev/null 2>&1 || true' EXIT
until_serving "$base" 10
[ "$(curl -fsS "$base/")" = "Hello World!" ]
check_resize "$base" "$state/thumb.webp"
grep -q 'key="cat.png"' "$state/log" || { cat "$state/log"; echo "the access line names the key" >&2; exit 1; }
if grep -q $'\x1b\\[' "$state/log"; then echo "colour codes in a log file" >&2; exit 1; fi
echo "served / and a 32×24 WebP of the store's cat.png; plain log lines, the access line names the key"
kill "$server"
wait "$server" || true

echo "==> under systemd"
"${sudo[@]}" bash deploy/debian/systemd-check.sh

echo "==> dpkg --purge (the originals in the state directory stay)"
made_state=
if [ ! -e /var/lib/media-proxy ]; then
  made_state=yes
  "${sudo[@]}" mkdir -p /var/lib/media-proxy/media
  "${sudo[@]}" cp "$state/media/cat.png" /var/lib/media-proxy/media/
fi
"${sudo[@]}" dpkg --purge media-proxy
[ ! -e /usr/bin/media-proxy ] && [ ! -e /etc/media-proxy/media-proxy.toml ]
if [ -n "$made_state" ]; then
  [ -f /var/lib/media-proxy/media/cat.png ] || { echo "the purge deleted the store" >&2; exit 1; }
  "${sudo[@]}" rm -rf /var/lib/media-proxy
fi
trap - EXIT
echo "the Debian package installs, serves and uninstalls"
