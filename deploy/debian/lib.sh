# Shell helpers of the package checks (check.sh, systemd-check.sh): sourced, not run.
# The pictures are made and decoded with Pillow (installed by ./dev tools).

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A 64×48 photo-like PNG at $1: the original the checks resize.
make_original() {
  python3 -c 'import sys; from PIL import Image; Image.radial_gradient("L").resize((64, 48)).convert("RGB").save(sys.argv[1])' "$1"
}

# Asks $1 (http://host:port) for a 32-wide WebP of the store's cat.png into $2 and decodes it:
# sent as image/webp and a 32×24 WebP, or the check fails.
check_resize() {
  local headers
  headers=$(curl -fsS -o "$2" -D - "$1/cat.png?w=32&format=webp")
  grep -qi '^content-type: image/webp' <<<"$headers" || { echo "$headers"; return 1; }
  python3 -c 'import sys; from PIL import Image; i = Image.open(sys.argv[1]); assert (i.format, i.size) == ("WEBP", (32, 24)), (i.format, i.size)' "$2"
}

# Waits until $1 (http://host:port) answers /healthz, for at most $2 seconds; fails after.
until_serving() {
  local tries=$(($2 * 10))
  for _ in $(seq 1 "$tries"); do
    curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -fsS "$1/healthz" >/dev/null
}
