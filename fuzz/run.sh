#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60 s each), seeded with ../shared/corpus.
#   bash fuzz/run.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz if missing. The machine has one stable toolchain: RUSTC_BOOTSTRAP lets
# cargo-fuzz use the unstable sanitizer flags it needs. New inputs go to fuzz/corpus/<target>
# (ignored by git); a crash stops the run and is saved in fuzz/artifacts/<target>/ — turn it
# into a regression test (see docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(probe render mp4_index mkv_index video_file still_decoders request)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
seeds=../shared/corpus
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  case "$t" in
    request) dirs=("fuzz/corpus/$t") ;;
    mp4_index | mkv_index | video_file) dirs=("fuzz/corpus/$t" "$seeds/video") ;;
    still_decoders)
      # The corpus has no JPEG XL: a still and an animation made with cjxl from its PNGs
      # and GIFs (libjxl-tools, which ./dev tools installs).
      jxl=fuzz/corpus/still_decoders-jxl
      mkdir -p "$jxl"
      if command -v cjxl >/dev/null 2>&1 && [ -z "$(ls -A "$jxl")" ]; then
        for f in "$seeds"/png-pngsuite/basn2c08.png $(find "$seeds/gif" -name '*.gif' | head -20); do
          cjxl "$f" "$jxl/$(basename "$f").jxl" -e 1 --quiet 2>/dev/null || true
        done
      fi
      dirs=("fuzz/corpus/$t" "$seeds/heic" "$seeds/tiff" "$seeds/ico" "$jxl") ;;
    *) dirs=("fuzz/corpus/$t" "$seeds") ;;
  esac
  echo "==> $t for ${seconds}s"
  cargo fuzz run "$t" "${dirs[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -max_len=1048576
done
