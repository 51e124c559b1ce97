#!/usr/bin/env bash
# The formats browsers cannot all show, converted side by side in one run on this machine:
# our release binary's engine (`media-proxy convert`, the same code the server runs) against
# Pillow with pillow-heif (libheif + libde265; libtiff) and against libjxl's djxl + Pillow, on
# the same files: open, first frame, fit inside 498×422 (Misskey's `static`) or the
# no-flag conversion (own size inside 2048×2048), WebP at quality 77, effort 2.
# The Node reference (sharp's prebuilt libvips) has no HEVC decoder and passes these
# formats through unconverted: there is no figure of its to compare.
#
#   bash bench/formats-figures.sh [N]     N conversions per file and tool (default 5)
#
# CPU-ms per conversion (user+system of the process and its children, /usr/bin/time; the
# start of a bash and of the tool included for every tool), and peak RSS. Inputs: corpus HEIC photos, a corpus TIFF, and a
# 12 MP JPEG XL made once with cjxl into bench/.work/formats. Prints a Markdown table;
# docs/benchmarks.md holds the latest.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
work=bench/.work/formats
mkdir -p "$work/out"
. bench/setup.sh # the release build ($bin), the bench's Python ($venv) and the engine inputs
"$venv/bin/python" -c 'import pillow_heif' 2>/dev/null || "$venv/bin/pip" -q install pillow-heif
command -v cjxl >/dev/null || { echo "cjxl is needed (./dev tools installs libjxl-tools)"; exit 1; }
corpus=../shared/corpus
if [ ! -s "$work/photo12.jxl" ]; then
  cjxl "$inputs/photo12_baseline.jpg" "$work/photo12.jxl" -d 1 --lossless_jpeg=0 --quiet
fi

pillow() { # $1 input, $2 mode (static | own), $3 output
  "$venv/bin/python" - "$1" "$2" "$3" <<'PY'
import sys
from PIL import Image, ImageOps
import pillow_heif
pillow_heif.register_heif_opener()
Image.MAX_IMAGE_PIXELS = None
src, mode, out = sys.argv[1:]
im = ImageOps.exif_transpose(Image.open(src))
box = (498, 422) if mode == "static" else (2048, 2048)
im.thumbnail(box, Image.LANCZOS)
im.save(out, "WEBP", quality=77, method=2)
PY
}

measure() { # prints "cpu_ms rss_kb" (medians over $n runs) of the command "$@"
  local cpu=() rss=()
  for _ in $(seq "$n"); do
    /usr/bin/time -o "$work/time.txt" -f '%U %S %M' bash -c '"$@"' _ "$@" >/dev/null 2>&1
    read -r u s m <"$work/time.txt"
    cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%d", (u + s) * 1000 }')")
    rss+=("$m")
  done
  local c r
  c=$(printf '%s\n' "${cpu[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  r=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  echo "$c $r"
}

ours() { # $1 input, $2 mode
  if [ "$2" = static ]; then
    "$bin" convert "$1" "$work/out/ours.webp" --static
  else
    "$bin" convert "$1" "$work/out/ours.webp" --width 2048 --height 2048 --format webp --quality 77
  fi
}

djxl_pillow() { # $1 input, $2 mode: djxl to PNG, then Pillow as above
  djxl "$1" "$work/out/djxl.png" --quiet && pillow "$work/out/djxl.png" "$2" "$work/out/theirs.webp"
}

echo "| input | conversion | ours CPU-ms | ours peak RSS | reference | its CPU-ms | its peak RSS |"
echo "|---|---|---:|---:|---|---:|---:|"
row() { # $1 label, $2 file, $3 mode, $4 reference name, $5 reference function
  read -r oc orss <<<"$(measure ours "$2" "$3")"
  read -r tc trss <<<"$(measure "$5" "$2" "$3" "$work/out/theirs.webp")"
  echo "| $1 | $3 | $oc | $((orss / 1024)) MB | $4 | $tc | $((trss / 1024)) MB |"
}
export -f pillow ours djxl_pillow
export bin work venv
row "HEIC 12 MP grid (pug.heic)" "$corpus/heic/pillow-heif-other/pug.heic" static "Pillow + pillow-heif" pillow
row "HEIC 12 MP grid (pug.heic)" "$corpus/heic/pillow-heif-other/pug.heic" own "Pillow + pillow-heif" pillow
row "HEIC 5 MP phone (xiaomi.heic)" "$corpus/heic/pillow-heif-other/xiaomi.heic" static "Pillow + pillow-heif" pillow
row "TIFF 278×374 planar LZW" "$corpus/tiff/pillow/tiff_strip_planar_lzw.tiff" own "Pillow (libtiff)" pillow
row "TIFF 480×360 YCbCr JPEG" "$corpus/tiff/pillow/tiff_strip_ycbcr_jpeg_2x2_sampling.tif" own "Pillow (libtiff)" pillow
row "JPEG XL 12 MP (cjxl -d 1)" "$work/photo12.jxl" static "djxl + Pillow" djxl_pillow
