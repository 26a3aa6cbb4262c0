# Shared by the bench scripts (sourced): a scratch directory, the processes
# started (killed on exit), and a wait for a port to accept.
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }

# An NGINX config "$WORK/$1.conf": one worker in the foreground, no
# access log, then $2 inside its http block.
nginx_conf() {
  cat > "$WORK/$1.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/logs/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  $2
}
CONF
}

# An NGINX origin serving one small JSON body on each port given:
# "$WORK/origin.conf". The NGINX comparisons (proxy.sh, tls.sh) share it.
nginx_origin() {
  local body='{"id":42,"name":"kettle","price":12.5,"tags":["home","kitchen"],"stock":{"count":17,"warehouse":"AMS"}}'
  local listens="" p
  for p in "$@"; do listens+="listen 127.0.0.1:$p; "; done
  chmod 755 "$WORK"   # nginx workers run as nobody
  mkdir -p "$WORK/www" "$WORK/logs"
  printf "%s" "$body" > "$WORK/www/item.json"
  chmod -R a+rX "$WORK/www"
  nginx_conf origin "default_type application/json;
  server { $listens root $WORK/www; location / { try_files /item.json =404; } }"
}

# An NGINX reverse proxy (1 worker, upstream keep-alive) in front of the
# origin on 18081: "$WORK/proxy.conf". $1 is the server block's own
# directives (listen, TLS).
nginx_proxy() {
  nginx_conf proxy "upstream origin { server 127.0.0.1:18081; keepalive 256; }
  server {
    $1
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
}
