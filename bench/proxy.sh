#!/usr/bin/env bash
# Proxy speed, in one run, on this machine: an NGINX origin serving a small
# JSON body, measured with wrk (1 thread, 50 connections) directly, through
# NGINX as a reverse proxy (1 worker, upstream keepalive), and through
# Switchyard (1 worker thread) at 0 % and 50 % to new. Each proxy is pinned to
# its own CPU, wrk and the origin to the other. Prints req/s, p50, p99 and
# each figure's ratio to NGINX's.
#
# Needs nginx and wrk (apt-get install -y nginx wrk). Not run by CI.
# Usage: bench/proxy.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk: apt-get install -y nginx wrk"; exit 1; }
cargo build --release --quiet
BIN=target/release/switchyard
source bench/lib.sh
PROXY_CPU=0
LOAD_CPU=1

nginx_origin 18081 18082

nginx_proxy "listen 127.0.0.1:18090;"

switchyard_conf() {
  cat > "$WORK/sy-$1.yaml" <<CONF
listen: "127.0.0.1:$2"
admin: { listen: "127.0.0.1:$3" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:18081" }
  new: { url: "http://127.0.0.1:18082" }
rollout: { percent: $1, sticky: none }
logging: { level: warn }
CONF
}


declare -A PID
taskset -c $LOAD_CPU nginx -c "$WORK/origin.conf" -p "$WORK" & pids+=($!); PID[origin]=$!
taskset -c $PROXY_CPU nginx -c "$WORK/proxy.conf" -p "$WORK" & pids+=($!); PID[nginx]=$!
switchyard_conf 0 18100 18101
switchyard_conf 50 18110 18111
taskset -c $PROXY_CPU "$BIN" serve -c "$WORK/sy-0.yaml" --reset-state & pids+=($!); PID[switchyard-0]=$!
taskset -c $PROXY_CPU "$BIN" serve -c "$WORK/sy-50.yaml" --reset-state & pids+=($!); PID[switchyard-50]=$!
for p in 18081 18090 18100 18110; do wait_port $p; done
for p in 18081 18090 18100 18110; do code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$p/item"); [[ $code == 200 ]] || { echo "port $p answers $code"; curl -si "http://127.0.0.1:$p/item"; exit 1; }; done

# User and system CPU ticks used by a process and its children (nginx's workers).
ticks() {
  local user=0 sys=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat")
    user=$((user + u)); sys=$((sys + s))
  done
  echo "$user $sys"
}

declare -A RPS P50 P99 EFF USER SYS
HZ=$(getconf CLK_TCK)
run() { # name port
  taskset -c $LOAD_CPU wrk -t1 -c50 -d2s --latency "http://127.0.0.1:$2/item" >/dev/null
  local out u0 s0 u1 s1 n
  read -r u0 s0 < <(ticks "${PID[$1]}")
  out=$(taskset -c $LOAD_CPU wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:$2/item")
  read -r u1 s1 < <(ticks "${PID[$1]}")
  n=$(awk '/^ *[0-9]+ requests in/ {print $1}' <<<"$out")
  EFF[$1]=$(awk -v r="$n" -v t="$((u1 - u0 + s1 - s0))" -v hz="$HZ" 'BEGIN { print (t > 0) ? r / (t / hz) : 0 }')
  USER[$1]=$(awk -v r="$n" -v t="$((u1 - u0))" -v hz="$HZ" 'BEGIN { print t / hz * 1e6 / r }')
  SYS[$1]=$(awk -v r="$n" -v t="$((s1 - s0))" -v hz="$HZ" 'BEGIN { print t / hz * 1e6 / r }')
  RPS[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  P50[$1]=$(awk '$1=="50%" {print $2}' <<<"$out")
  P99[$1]=$(awk '$1=="99%" {print $2}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "$1: errors: $(grep Non-2xx <<<"$out")"; fi
}
run origin 18081
run nginx 18090
run switchyard-0 18100
run switchyard-50 18110

ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms/, "", v); print v } else { sub(/s/, "", v); print v*1000 } }'; }
printf '\n%-16s %10s %9s %9s %11s %10s %16s %12s %11s %11s\n' target "req/s" "p50 ms" "p99 ms" "req/s ×nginx" "p99 ×nginx" "req/CPU-second" "CPU ×nginx" "user µs/req" "sys µs/req"
for t in origin nginx switchyard-0 switchyard-50; do
  printf '%-16s %10.0f %9.3f %9.3f %11.2f %10.2f %16.0f %12.2f %11.2f %11.2f\n' "$t" "${RPS[$t]}" "$(ms "${P50[$t]}")" "$(ms "${P99[$t]}")" \
    "$(awk -v a="${RPS[$t]}" -v b="${RPS[nginx]}" 'BEGIN{print a/b}')" \
    "$(awk -v a="$(ms "${P99[$t]}")" -v b="$(ms "${P99[nginx]}")" 'BEGIN{print a/b}')" \
    "${EFF[$t]}" "$(awk -v a="${EFF[$t]}" -v b="${EFF[nginx]}" 'BEGIN{print (b > 0) ? a/b : 0}')" \
    "${USER[$t]}" "${SYS[$t]}"
done
echo
echo "req/CPU-second: requests served per second of CPU the proxy itself used (its capacity when the"
echo "load generator, not the proxy, is the bottleneck, as on a 2-core machine)."
awk -v nu="${USER[nginx]}" -v ns="${SYS[nginx]}" -v ss="${SYS[switchyard-0]}" 'BEGIN {
  printf "ceiling: with no user-space work at all, Switchyard at 0 %% would use %.2f µs of kernel time per request,\n", ss
  printf "so its capacity could be at most %.2f× NGINX'"'"'s (%.2f µs user + %.2f µs system).\n", (nu + ns) / ss, nu, ns }'
