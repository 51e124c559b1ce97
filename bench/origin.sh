# Sourced by the figure scripts, from the repository root: an nginx origin (sendfile) on
# 127.0.0.2 serving $work/www, its config, pid file and error log under $work.
#   origin_start WORK PORT [DIRECTIVES]   writes the config (extra http directives) and starts it
#   origin_stop WORK           stops it (for the scripts' EXIT traps)
origin_start() {
  local work=$1 port=$2 extra=${3:-}
  mkdir -p "$work/www" "$work/logs"
  cat > "$work/nginx.conf" <<NGX
worker_processes 1;
error_log $PWD/$work/logs/error.log;
pid $PWD/$work/nginx.pid;
events { worker_connections 512; }
http { access_log off; sendfile on; keepalive_requests 100000; $extra
  types { image/gif gif; image/png png; image/jpeg jpg; }
  server { listen 127.0.0.2:$port; root $PWD/$work/www; } }
NGX
  # A leftover origin from an interrupted run would hold the port.
  if [ -s "$work/nginx.pid" ]; then origin_stop "$work"; sleep 0.5; fi
  nginx -c "$PWD/$work/nginx.conf"
}

origin_stop() {
  nginx -c "$PWD/$1/nginx.conf" -s stop 2>/dev/null || true
}
