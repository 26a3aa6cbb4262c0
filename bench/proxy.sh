#!/usr/bin/env bash
# Plain proxying, Switchyard against NGINX, in one run on this machine: the
# same NGINX origin behind NGINX as a reverse proxy (upstream keep-alive) and
# behind Switchyard (0 % to new, so every request goes to the same origin
# NGINX uses). On a 2-core machine the load generator shares a core with the
# origin and caps req/s for every proxy, so the figure that counts is each
# proxy's CPU per request: its own user + system time from /proc (threads and
# worker processes included) over the requests done. Each table gives it,
# req/s, p99 and the ratios to NGINX's.
#
# Scenarios (all by default; name some to run only those):
#   small    wrk, 1 thread, 50 keep-alive connections, a 105-byte JSON answer;
#            1 worker each, the proxy pinned to CPU 0, load and origin to CPU 1
#   workers2 the same with 2 workers each (NGINX worker_processes 2,
#            Switchyard server.workers 2), nothing pinned
#   fixed    open loop: oha at a fixed RATE req/s (default 15000), 50
#            connections; CPU per request and p99 at that load
#   64k, 1m  answers of 64 KiB (50 connections) and 1 MiB (10 connections)
#   upload   POSTs of 1 MiB bodies (10 connections), streamed by both proxies
#            (NGINX with proxy_request_buffering off)
#   close    a new connection per request (Connection: close)
#   h2       h2load, 10 connections × 100 streams, prior-knowledge HTTP/2 to
#            the proxy (NGINX `listen … http2`); HTTP/1.1 to the origin
#   idle     10,000 idle keep-alive connections (each has had one request):
#            RSS and open fds of each proxy before and with them
#   log      Switchyard's JSON access log on (to a file) against off
#
# Needs nginx and wrk; h2load for `h2`, oha for `fixed` (apt-get install -y
# nginx wrk nghttp2-client; cargo install oha). Not run by CI.
# HEADERS=same has NGINX write the headers Switchyard writes by default
# (X-Forwarded-*, X-Request-ID, Via, the side header: bench/same-headers.sh),
# which its bare proxy_pass leaves out; the tables then say so.
# BIN=path/to/another/switchyard compares another build. SYSCALLS=1 also
# prints each peer's system calls per request (perf's syscall tracepoints).
# Usage: bench/proxy.sh [seconds=10] [scenario...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
shift || true
SCENARIOS=${*:-small workers2 fixed 64k 1m upload close h2 idle log}
RATE=${RATE:-15000}
# Only the tools the scenarios asked for: oha for `fixed`, h2load for `h2`.
needs="nginx wrk"
[[ " $SCENARIOS " == *" fixed "* ]] && needs+=" oha"
[[ " $SCENARIOS " == *" h2 "* ]] && needs+=" h2load"
for t in $needs; do
  command -v $t >/dev/null || { echo "needs $t: apt-get install -y nginx wrk nghttp2-client; cargo install oha"; exit 1; }
done
cargo build --release --quiet --bin switchyard --example bench-tools
BIN=${BIN:-target/release/switchyard}
TOOLS=target/release/examples/bench-tools
source bench/lib.sh
ulimit -n "$(ulimit -Hn)"   # 10,000 idle connections need as many fds
PROXY_CPU=0
LOAD_CPU=1

nginx_origin 18081
nginx_proxy "listen 127.0.0.1:18090; listen 127.0.0.1:18091 http2;"
mv "$WORK/proxy.conf" "$WORK/nginx-1.conf"
NGINX_WORKERS=2 nginx_proxy "listen 127.0.0.1:18092;"
mv "$WORK/proxy.conf" "$WORK/nginx-2.conf"

# header_read_timeout as NGINX's client_header_timeout (60 s): both keep a quiet
# keep-alive connection that long (hyper starts the header clock when idle).
switchyard_conf() { # name port workers access_log
  cat > "$WORK/$1.yaml" <<CONF
listen: "127.0.0.1:$2"
admin: { listen: "127.0.0.1:$(($2 + 1))" }
server: { workers: $3, max_connections: 19000, header_read_timeout: 60s }
backends:
  old: { url: "http://127.0.0.1:18081" }
  new: { url: "http://127.0.0.1:18081" }
rollout: { percent: 0, sticky: none }
logging: { level: warn, format: json, access_log: $4 }
CONF
}
switchyard_conf switchyard 18100 1 false
switchyard_conf switchyard-2 18110 2 false
switchyard_conf switchyard-log 18120 1 true

start origin 18081 $LOAD_CPU nginx -c "$WORK/origin.conf" -p "$WORK"
start nginx 18090 $PROXY_CPU nginx -c "$WORK/nginx-1.conf" -p "$WORK"
start nginx-2 18092 0,1 nginx -c "$WORK/nginx-2.conf" -p "$WORK"
start switchyard 18100 $PROXY_CPU "$BIN" serve -c "$WORK/switchyard.yaml" --reset-state
start switchyard-2 18110 0,1 "$BIN" serve -c "$WORK/switchyard-2.yaml" --reset-state
start switchyard-log 18120 $PROXY_CPU "$BIN" serve -c "$WORK/switchyard-log.yaml" --reset-state
for name in "${!PORT[@]}"; do wait_port "${PORT[$name]}"; done
for name in "${!PORT[@]}"; do
  code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:${PORT[$name]}/item")
  [[ $code == 200 ]] || { echo "$name answers $code"; exit 1; }
done

load() { taskset -c $LOAD_CPU "$@"; }
# wrk_run NAME PROXY URL-PATH CONNECTIONS [wrk options...]: warm up 2 s, then measure.
wrk_run() {
  local name=$1 proxy=$2 path=$3 conns=$4; shift 4
  local url="http://127.0.0.1:${PORT[$proxy]}$path"
  load wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null
  measure "$name" "${PID[$proxy]}" parse_wrk load wrk -t1 -c"$conns" -d"${SECS}s" --latency "$@" "$url"
}

for scenario in $SCENARIOS; do
  case $scenario in
    small)
      for p in nginx switchyard; do wrk_run "$p" "$p" /item 50; done
      table "small answers, keep-alive, 1 worker" nginx nginx switchyard ;;
    workers2)
      for p in nginx-2 switchyard-2; do
        local_url="http://127.0.0.1:${PORT[$p]}/item"
        wrk -t1 -c50 -d2s "$local_url" >/dev/null
        measure "$p" "${PID[$p]}" parse_wrk wrk -t1 -c50 -d"${SECS}s" --latency "$local_url"
      done
      table "small answers, keep-alive, 2 workers, nothing pinned" nginx-2 nginx-2 switchyard-2 ;;
    fixed)
      for p in nginx switchyard; do
        url="http://127.0.0.1:${PORT[$p]}/item"
        load oha -z 2s -c 50 -q "$RATE" --no-tui "$url" >/dev/null
        measure "$p@$RATE" "${PID[$p]}" parse_oha load oha -z "${SECS}s" -c 50 -q "$RATE" --latency-correction --no-tui --output-format json "$url"
      done
      table "open loop at $RATE req/s, 50 connections" "nginx@$RATE" "nginx@$RATE" "switchyard@$RATE" ;;
    64k)
      for p in nginx switchyard; do wrk_run "$p-64k" "$p" /files/64k 50; done
      table "64 KiB answers, 50 connections" nginx-64k nginx-64k switchyard-64k ;;
    1m)
      for p in nginx switchyard; do wrk_run "$p-1m" "$p" /files/1m 10; done
      table "1 MiB answers, 10 connections" nginx-1m nginx-1m switchyard-1m ;;
    upload)
      printf 'wrk.method = "POST"\nwrk.body = string.rep("a", 1048576)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' > "$WORK/upload.lua"
      for p in nginx switchyard; do wrk_run "$p-upload" "$p" /upload 10 -s "$WORK/upload.lua"; done
      table "1 MiB uploads, 10 connections" nginx-upload nginx-upload switchyard-upload ;;
    close)
      for p in nginx switchyard; do wrk_run "$p-close" "$p" /item 50 -H "Connection: close"; done
      table "a connection per request (Connection: close), 50 at once" nginx-close nginx-close switchyard-close ;;
    h2)
      for p in nginx switchyard; do
        port=${PORT[$p]}; [[ $p == nginx ]] && port=18091
        load h2load -c 10 -m 100 -D 2 "http://127.0.0.1:$port/item" >/dev/null
        measure "$p-h2" "${PID[$p]}" parse_h2load load h2load -c 10 -m 100 -D "$SECS" "http://127.0.0.1:$port/item"
      done
      table "HTTP/2 clients: h2load, 10 connections × 100 streams" nginx-h2 nginx-h2 switchyard-h2 ;;
    idle)
      # RSS three times: when the last connection has had its answer; SETTLE
      # seconds later, once quiet connections are set aside (a keep-alive
      # connection quiet for 1–2 s is parked, see src/server/http1.rs); and
      # after one more second carrying light traffic on another connection
      # (wrk, 1 connection), as an edge holding idle connections also does:
      # mimalloc returns freed pages to the system only when the thread
      # allocates again after its purge delay (1 s), so a worker left fully
      # idle keeps them. fds show all 10,000 are still open.
      SETTLE=${SETTLE:-3}
      printf '\n10,000 idle keep-alive connections (each after one request)\n%-12s %8s %10s %12s %14s %8s %9s %8s\n' peer "RSS MB" "at ready" "after ${SETTLE}s" "+1s traffic" "fds" "with 10k" "+RSS MB"
      for p in nginx switchyard; do
        rss() { local kb=0 q; for q in "${PID[$p]}" $(pgrep -P "${PID[$p]}" || true); do kb=$((kb + $(awk '/^VmRSS/ {print $2}' /proc/$q/status))); done; echo "$kb"; }
        fds() { local n=0 q; for q in "${PID[$p]}" $(pgrep -P "${PID[$p]}" || true); do n=$((n + $(ls /proc/$q/fd | wc -l))); done; echo "$n"; }
        mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
        r0=$(rss); f0=$(fds)
        load "$TOOLS" idle --addr "127.0.0.1:${PORT[$p]}" --connections 10000 > "$WORK/idle-$p.out" & idler=$!
        for _ in $(seq 1 600); do grep -q '^ready' "$WORK/idle-$p.out" && break; kill -0 $idler 2>/dev/null || { echo "idle client failed"; exit 1; }; sleep 0.1; done
        grep -q '^ready' "$WORK/idle-$p.out" || { echo "idle client never ready"; exit 1; }
        r1=$(rss)
        sleep "$SETTLE"
        r2=$(rss)
        if [[ $p == switchyard ]]; then
          parked=$(curl -s "http://127.0.0.1:$((${PORT[$p]} + 1))/metrics" | awk '$1 == "switchyard_connections_parked" {print $2}')
        fi
        load wrk -t1 -c1 -d1s "http://127.0.0.1:${PORT[$p]}/item" >/dev/null
        r3=$(rss); f1=$(fds)
        pkill -f "bench-tools idle --addr 127.0.0.1:${PORT[$p]}" || true
        wait $idler 2>/dev/null || true
        printf '%-12s %8s %10s %12s %14s %8d %9d %8s\n' "$p" "$(mb $r0)" "$(mb $r1)" "$(mb $r2)" "$(mb $r3)" "$f0" "$f1" "$(mb $((r3 - r0)))"
      done
      echo "switchyard_connections_parked after ${SETTLE}s: ${parked:-?}" ;;
    log)
      for p in switchyard switchyard-log; do wrk_run "$p" "$p" /item 50; done
      lines=$(wc -l < "$WORK/logs/switchyard-log.out")
      table "Switchyard's JSON access log off and on ($lines lines written)" switchyard switchyard switchyard-log ;;
    *) echo "unknown scenario $scenario (small workers2 fixed 64k 1m upload close h2 idle log)"; exit 1 ;;
  esac
done
echo
echo "CPU µs/req: the proxy's own user + system CPU time per request done, from /proc."
