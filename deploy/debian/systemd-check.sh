#!/usr/bin/env bash
# Runs the installed package under a real systemd, as a server would: boots containers
# (systemd-nspawn) whose /usr is this machine's (with the package installed by check.sh) and
# whose /etc is a copy of this machine's (the settings, and the unit enabled by the package's
# postinst). Their systemd starts media-proxy.service: the dynamic user, the state directory,
# the sandbox. A container shares this machine's network, so the service is asked from here;
# `systemctl` runs inside it (nsenter).
#
# 1. The service starts at boot, serves a store resize, runs sandboxed, writes its cache in
#    the state directory, logs JSON to the journal, and stops cleanly on `systemctl stop`.
# 2. With a setting that does not validate, it fails once (exit code 2) and stays failed: not
#    restarted every two seconds.
#
# Run by check.sh after `dpkg -i`, as root. Needs a merged /usr (Debian 12 has one) and
# systemd-nspawn (package systemd-container, installed by ./dev tools). Where containers
# cannot be made at all (no CAP_SYS_ADMIN), says so and exits 0: check.sh has run the unit's
# command line already. A container that boots but whose service misbehaves is a failure.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

unit=/usr/lib/systemd/system/media-proxy.service
[ -f "$unit" ] || { echo "media-proxy is not installed" >&2; exit 1; }
for dir in bin lib sbin; do
  [ -L "/$dir" ] || { echo "skipped: /$dir is not a link into /usr (no merged /usr)"; exit 0; }
done

root=
nspawn=
init=
mounted=
stop_container() {
  # The container's init, killed, takes every process of the container with it (killing
  # systemd-nspawn itself would leave them running).
  if [ -n "$nspawn" ]; then
    pkill -KILL -P "$nspawn" 2>/dev/null || true
    wait "$nspawn" 2>/dev/null || true
  fi
  nspawn=
  if [ -n "$root" ]; then rm -rf --one-file-system "$root" "$root.nspawn.log"; fi
  root=
}
cleanup() {
  stop_container
  if [ -n "$mounted" ]; then umount /run/systemd/nspawn 2>/dev/null || true; fi
}
trap cleanup EXIT

# nspawn keeps per-container state under /run/systemd/nspawn and removes it only from a
# tmpfs: give it one where /run is none.
if [ "$(stat -f -c %T /run/systemd/nspawn 2>/dev/null || stat -f -c %T /run)" != tmpfs ]; then
  mkdir -p /run/systemd/nspawn
  mount -t tmpfs tmpfs /run/systemd/nspawn && mounted=yes
fi

in_container() { nsenter -t "$init" -a "$@"; }
journal() { journalctl --directory "$root/var/log/journal" --no-pager "$@"; }
unit_state() { in_container systemctl show media-proxy -p ActiveState,SubState,NRestarts,ExecMainStatus; }

# Makes a container root with one drop-in for the unit (the lines of its [Service] section,
# as `systemctl edit media-proxy` would write them) and boots it; returns once its systemd
# has finished starting up.
boot() {
  root=$(mktemp -d)
  # The container's / must be searchable by the service's user (mktemp makes it 0700).
  chmod 0755 "$root"
  mkdir -p "$root"/{dev,proc,sys,run,tmp,root,usr,var/log/journal}
  for link in bin lib lib64 sbin; do
    if [ -L "/$link" ]; then ln -s "$(readlink "/$link")" "$root/$link"; fi
  done
  cp -a /etc "$root/etc"
  # nspawn looks for os-release before /usr is bound; a new machine ID for the container.
  rm -f "$root/etc/os-release" && cp /usr/lib/os-release "$root/etc/os-release"
  : >"$root/etc/machine-id"
  [ -L "$root/etc/systemd/system/multi-user.target.wants/media-proxy.service" ] \
    || { echo "the package did not enable the unit" >&2; exit 1; }
  # An original in the store, where the unit's state directory will be: systemd hands the
  # directory to the dynamic user when it starts the service.
  mkdir -p -m 0700 "$root/var/lib/private"
  mkdir -p "$root/var/lib/private/media-proxy/media"
  make_original "$root/var/lib/private/media-proxy/media/cat.png"
  mkdir -p "$root/etc/systemd/system/media-proxy.service.d"
  printf '[Service]\n%s\n' "$1" >"$root/etc/systemd/system/media-proxy.service.d/check.conf"

  # No machined or system bus here: not registered, run in the caller's cgroup.
  systemd-nspawn --quiet -D "$root" --bind-ro=/usr --boot --link-journal=no --register=no \
    --keep-unit -M media-proxy-check >"$root.nspawn.log" 2>&1 &
  nspawn=$!
  init=
  for _ in $(seq 1 600); do
    if ! kill -0 "$nspawn" 2>/dev/null; then
      # Not our failure: this machine cannot make containers.
      echo "skipped: systemd-nspawn could not run a container here:"
      cat "$root.nspawn.log"
      nspawn=
      exit 0
    fi
    # Its systemd (the child of nspawn, once set up) answers on its own bus.
    init=$(pgrep -P "$nspawn" || true)
    if [ -n "$init" ]; then
      case "$(in_container systemctl is-system-running 2>/dev/null || true)" in
        initializing | starting | running | degraded) break ;;
      esac
    fi
    init=
    sleep 0.1
  done
  [ -n "$init" ] || { echo "the container's systemd did not answer in 60 s" >&2; exit 1; }
  # running, or degraded: some of the machine's units have no business in a container.
  in_container systemctl is-system-running --wait >/dev/null || true
}

port=$(free_port)
base="http://127.0.0.1:$port"

echo "==> 1. booted with the package: the service is started, serves and stops"
# The port moved off 3003 the way docs/operations.md says settings go: a drop-in.
boot "Environment=MEDIA_PROXY__LISTEN=127.0.0.1:$port"
if ! until_serving "$base" 30; then
  journal -n 40 || true
  echo "the service did not start under systemd in 30 s" >&2
  exit 1
fi
state=$(unit_state)
grep -qx 'ActiveState=active' <<<"$state" || { echo "$state"; echo "not active" >&2; exit 1; }
[ "$(curl -fsS "$base/")" = "Hello World!" ]
check_resize "$base" "$root/thumb.webp"
pid=$(in_container systemctl show media-proxy -p MainPID --value)
# The container's PID, seen from here: the process whose namespace PID it is.
host_pid=$(for p in $(pgrep -x media-proxy); do
  if grep -qE "^NSpid:.*[[:space:]]$pid\$" "/proc/$p/status"; then echo "$p"; fi
done | head -1)
[ -n "$host_pid" ] || { echo "the service's process (PID $pid in the container) is not found" >&2; exit 1; }
status=$(cat "/proc/$host_pid/status")
uid=$(awk '/^Uid:/ { print $2 }' <<<"$status")
{ [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ]; } || { echo "not a dynamic user: uid $uid" >&2; exit 1; }
grep -qP '^NoNewPrivs:\t1$' <<<"$status" || { echo "NoNewPrivileges is not in effect" >&2; exit 1; }
grep -qP '^CapEff:\t0+$' <<<"$status" || { echo "the service has capabilities" >&2; exit 1; }
grep -qP '^Seccomp:\t2$' <<<"$status" || { echo "no system-call filter" >&2; exit 1; }
# The rendered variant was written to the state directory (the one place it may write).
entries=$(find "$root/var/lib/private/media-proxy/cache" -type f | wc -l)
[ "$entries" -ge 1 ] || { echo "no variant cache entry in the state directory" >&2; exit 1; }
echo "uid $uid (dynamic), no capabilities, no new privileges, a system-call filter;"
echo "served / and a 32×24 WebP of the store's cat.png, cached in the state directory ($entries file)"
# `systemctl stop` waits for the stop to end: SIGTERM, in-flight requests finished, exit 0.
in_container systemctl stop media-proxy
state=$(unit_state)
grep -qx 'ExecMainStatus=0' <<<"$state" || { echo "$state"; echo "did not exit 0 on stop" >&2; exit 1; }
log=$(journal -u media-proxy.service -o cat)
grep -q '"key":"cat.png"' <<<"$log" \
  || { echo "$log"; echo "no JSON access line for cat.png in the journal" >&2; exit 1; }
grep -q 'shutting down' <<<"$log" \
  || { echo "$log"; echo "the service did not shut down cleanly" >&2; exit 1; }
echo "systemctl stop: exit 0 after its graceful shutdown; the journal has the JSON access line"
# The container powers off on SIGTERM (its init gets SIGRTMIN+3).
kill -TERM "$nspawn"
wait "$nspawn" || { cat "$root.nspawn.log"; echo "the container did not power off cleanly" >&2; exit 1; }
nspawn=
stop_container

echo "==> 2. a setting that does not validate: failed once, not restarted"
boot "Environment=MEDIA_PROXY__LISTEN=127.0.0.1:$port MEDIA_PROXY__LOG__FILTER=verbose"
# Wait for the outcome: failed for good, or waiting to be restarted.
for _ in $(seq 1 300); do
  state=$(unit_state)
  if grep -qxE 'ActiveState=(failed|inactive)|SubState=auto-restart|NRestarts=[1-9][0-9]*' <<<"$state"; then
    break
  fi
  sleep 0.1
done
if ! { grep -qx 'ActiveState=failed' <<<"$state" && grep -qx 'NRestarts=0' <<<"$state" \
  && grep -qx 'ExecMainStatus=2' <<<"$state"; }; then
  echo "$state"
  journal -u media-proxy.service -n 20 || true
  echo "a configuration error must leave the service failed (exit code 2), not restarting" >&2
  exit 1
fi
journal -u media-proxy.service -o cat | grep -q 'invalid setting `log.filter`' \
  || { echo "the journal does not name the setting" >&2; exit 1; }
echo "exit code 2, the journal names log.filter, no restart"
stop_container

echo "the installed unit starts, serves and stops under systemd; a bad setting stops it for good"
