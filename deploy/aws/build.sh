#!/usr/bin/env bash
# Builds the AWS Lambda package of media-proxy in one command:
#   target/lambda/media-proxy/bootstrap      the binary Lambda runs (custom runtime)
#   target/lambda/media-proxy/bootstrap.zip  what `aws lambda update-function-code` uploads
#
#   deploy/aws/build.sh            arm64 (Graviton, the default of the seed and the template)
#   deploy/aws/build.sh --x86-64   x86_64
#
# Installs what it needs into target/lambda-tools (ignored by git): cargo-lambda and its
# Zig cross-compiler from PyPI, and the Rust standard library of the target through rustup.
# Only the package registries (crates.io, PyPI, rustup) are used.
set -euo pipefail
cd "$(dirname "$0")/../.."

arch=arm64
case "${1:-}" in
  ""|--arm64) arch=arm64 ;;
  --x86-64|--x86_64) arch=x86-64 ;;
  *) echo "usage: $0 [--arm64|--x86-64]" >&2; exit 2 ;;
esac
target=aarch64-unknown-linux-gnu
[ "$arch" = x86-64 ] && target=x86_64-unknown-linux-gnu

tools=target/lambda-tools
if ! command -v cargo-lambda >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/cargo-lambda" ]; then
    echo "== installing cargo-lambda and Zig into $tools (PyPI)"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet "cargo-lambda==1.9.2"
  fi
  export PATH="$PWD/$tools/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
  rustup target add "$target" >/dev/null
fi

# No debug line tables in the function: a smaller zip and less to load at a cold start.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
echo "== cargo lambda build --release --$arch"
cargo lambda build --release "--$arch" --bin media-proxy --output-format zip
# The zip holds `bootstrap`; keep the plain binary beside it for the container route and
# for inspection.
out=target/lambda/media-proxy
rm -f "$out/bootstrap"
python3 - "$out" <<'PY'
import sys, zipfile, os
out = sys.argv[1]
with zipfile.ZipFile(os.path.join(out, "bootstrap.zip")) as z:
    z.extract("bootstrap", out)
os.chmod(os.path.join(out, "bootstrap"), 0o755)
PY
ls -l "$out/bootstrap" "$out/bootstrap.zip"
file "$out/bootstrap" 2>/dev/null || true
