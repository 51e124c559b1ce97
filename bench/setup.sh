# Sourced by the figure scripts, from the repository root: makes sure of a release build
# ($bin), of the bench's Python ($venv, under bench/.work: nothing is installed system-wide)
# and of the deterministic inputs of bench/make-inputs.py ($inputs).
# MEDIA_PROXY_BIN measures another build (an older commit's, for an A/B of a change).
bin="${MEDIA_PROXY_BIN:-target/release/media-proxy}"
# Otherwise always asked for: a no-op when the binary is current, and a stale binary (an
# older commit's) is never measured by mistake.
[ -n "${MEDIA_PROXY_BIN:-}" ] || cargo build --release --locked
inputs=bench/.work/engine/in
# The bench's own Python: Pillow (the inputs, the score's decoder), numpy and scikit-image
# (bench/output-score.py's SSIM, with which bench/run.sh scores the emoji outputs).
venv=bench/.work/engine/venv
[ -d "$venv" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import PIL, numpy, skimage' 2>/dev/null ||
  "$venv/bin/pip" -q install pillow numpy scikit-image
# anim30.gif is written last: its presence means every input is there.
if [ ! -s "$inputs/anim30.gif" ]; then
  mkdir -p "$inputs"
  "$venv/bin/python" bench/make-inputs.py "$inputs" ../shared/corpus
fi

# A server's figure plus its live worker processes': `tree PID OWN CHILD` runs the awk
# program OWN on /proc/PID/FILE and CHILD on each child's (FILE: $file). A worker that just
# ended (a zombie) may have neither: it adds nothing.
tree() {
  local total; total=$(awk "$2" "/proc/$1/$file")
  local v
  for c in $(pgrep -P "$1"); do
    v=$(awk "$3" "/proc/$c/$file" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# CPU ticks of a server and its workers: its own, its reaped children's, its live ones'. A
# worker is killed when its client leaves mid-render (wrk's end does that to the renders in
# flight): reaped while the tree is read, it was counted by neither, and whole runs lost
# their workers' CPU. So the tree is read again until the reaped part held still meanwhile.
tree_ticks() {
  local reaped again total
  while :; do
    reaped=$(awk '{print $16 + $17}' "/proc/$1/stat")
    total=$(file=stat tree "$1" '{print $14 + $15 + $16 + $17}' '{print $14 + $15}')
    again=$(awk '{print $16 + $17}' "/proc/$1/stat")
    [ "$again" = "$reaped" ] && break
  done
  echo "$total"
}
# Peak RSS (kB), added up.
tree_hwm() { file=status tree "$1" '/VmHWM/ {print $2}' '/VmHWM/ {print $2}'; }
# The same over a run: a killed worker takes its VmHWM with it, so the tree is sampled while
# the load runs. `hwm_start PID` before it, `hwm_stop PID` after: the largest sum seen.
hwm_start() {
  hwm_file=$(mktemp)
  (while kill -0 "$1" 2>/dev/null; do tree_hwm "$1" >> "$hwm_file" 2>/dev/null || true; sleep 0.2; done) &
  hwm_watcher=$!
}
hwm_stop() {
  tree_hwm "$1" >> "$hwm_file" 2>/dev/null || true
  kill "$hwm_watcher" 2>/dev/null || true
  wait "$hwm_watcher" 2>/dev/null || true
  sort -n "$hwm_file" | tail -1
  rm -f "$hwm_file"
}
