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
