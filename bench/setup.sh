# Sourced by the figure scripts, from the repository root: makes sure of a release build
# ($bin) and of the deterministic inputs of bench/make-inputs.py ($inputs; Pillow goes into
# a virtualenv under bench/.work, nothing is installed system-wide).
bin=target/release/media-proxy
[ -x "$bin" ] || cargo build --release --locked
inputs=bench/.work/engine/in
# anim30.gif is written last: its presence means every input is there.
if [ ! -s "$inputs/anim30.gif" ]; then
  mkdir -p "$inputs"
  venv=bench/.work/engine/venv
  [ -d "$venv" ] || { python3 -m venv "$venv"; "$venv/bin/pip" -q install pillow; }
  "$venv/bin/python" bench/make-inputs.py "$inputs" ../shared/corpus
fi
