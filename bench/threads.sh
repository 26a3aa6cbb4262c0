#!/usr/bin/env bash
# Where a mirrored request's CPU goes, thread by thread: each Switchyard
# thread's own CPU time and its context switches per request, with shadow at
# 100 % under an open-loop load, against NGINX's `mirror` in the same run.
#
# A mirrored request crosses threads (the live worker hands the mirror to
# the shadow runtime, the live answer follows it there, the pair goes on to
# the analysis thread). At a rate below saturation each thread sleeps between
# requests, so every hand-over can cost a wake-up: a system call for the
# waker and a context switch for the woken, on a core the live worker shares
# (everything is pinned to CPU 0 as in edge.sh). "voluntary" switches are a
# thread going to sleep because it has nothing to do; each is one wake-up.
# write() calls are counted apart (syscw in /proc/PID/task/TID/io): sockets
# are written with sendto, which syscw does not count, so on Switchyard's
# threads they are the eventfd writes with which one runtime wakes another.
#
# Needs nginx (apt-get install -y nginx). Not run by CI.
# BIN=path/to/another/switchyard measures another build.
# SHADOW=0 runs the same load unmirrored, for the floor under the mirrors.
# A peer that falls behind the rate is named (as in edge.sh): its figures
# then include the overload's own cost. Each run starts once the kernel's
# TIME_WAIT connections (NGINX's mirror leaves one per request) expired.
# Usage: bench/threads.sh [seconds=10]   (RATE=3000 req/s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RATE=${RATE:-3000}
command -v nginx >/dev/null || { echo "needs nginx: apt-get install -y nginx"; exit 1; }
cargo build --release --quiet --bin switchyard --example bench-tools
TOOLS=target/release/examples/bench-tools
BIN=${BIN:-target/release/switchyard}
source bench/lib.sh

nginx_origin 18081 18082
nginx_conf mirror "upstream old { server 127.0.0.1:18081; keepalive 256; }
  upstream new { server 127.0.0.1:18082; keepalive 256; }
  server { listen 127.0.0.1:18094;
    location / { mirror /mirror; mirror_request_body off; proxy_pass http://old; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    location = /mirror { internal; proxy_pass http://new\$request_uri; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat > "$WORK/switchyard.yaml" <<CONF
listen: "127.0.0.1:18110"
admin: { listen: "127.0.0.1:18111" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:18081" }
  new: { url: "http://127.0.0.1:18082" }
shadow: { percent: ${SHADOW:-100} }
logging: { level: warn }
CONF

start origin 18081 1 nginx -c "$WORK/origin.conf" -p "$WORK"
start nginx+mirror 18094 0 nginx -c "$WORK/mirror.conf" -p "$WORK"
start switchyard+shadow 18110 0 "$BIN" serve -c "$WORK/switchyard.yaml" --reset-state
for p in origin nginx+mirror switchyard+shadow; do wait_port "${PORT[$p]}"; done

# Every thread of PID and its children:
# "name utime stime voluntary nonvoluntary write-calls".
threads() {
  local p t
  for p in "$1" $(pgrep -P "$1" || true); do
    for t in /proc/"$p"/task/*; do
      awk -v name="$(tr ' ' _ < "$t/comm")" '
        FILENAME ~ /stat$/ { u = $14; s = $15 }
        /^voluntary_ctxt_switches/ { v = $2 }
        /^nonvoluntary_ctxt_switches/ { n = $2 }
        /^syscw/ { w = $2 }
        END { print name, u, s, v, n, w }' "$t/stat" "$t/status" "$t/io"
    done
  done
}

for p in nginx+mirror switchyard+shadow; do
  url="http://127.0.0.1:${PORT[$p]}/api/v1"
  settle
  taskset -c 1 $TOOLS load --url "$url" --rate "$RATE" --seconds 2 >/dev/null
  settle
  threads "${PID[$p]}" > "$WORK/before"
  out=$(taskset -c 1 $TOOLS load --url "$url" --rate "$RATE" --seconds "$SECS")
  threads "${PID[$p]}" > "$WORK/after"
  read -r n RPS[$p] P99[$p] _ < <(parse_load <<<"$out")
  printf '\n%s: %s requests at %s req/s, p99 %s ms\n' "$p" "$n" "$RATE" "${P99[$p]}"
  kept_up "$p" "$RATE" || echo "  (its figures below include the cost of the overload: rerun with a lower RATE)"
  printf '%-22s %8s %12s %11s %11s %13s %14s %11s\n' thread threads "CPU µs/req" "user µs" "sys µs" "wake-ups/req" "preempted/req" "write()/req"
  # Threads are grouped by name (a runtime's workers share one).
  awk -v n="$n" -v hz="$HZ" '
    NR == FNR { u0[$1] += $2; s0[$1] += $3; v0[$1] += $4; x0[$1] += $5; w0[$1] += $6; next }
    { c[$1]++; u[$1] += $2; s[$1] += $3; v[$1] += $4; x[$1] += $5; w[$1] += $6 }
    END {
      for (k in c) {
        du = (u[k] - u0[k]) / hz * 1e6 / n; ds = (s[k] - s0[k]) / hz * 1e6 / n
        dv = (v[k] - v0[k]) / n; dx = (x[k] - x0[k]) / n; dw = (w[k] - w0[k]) / n
        tu += du; ts += ds; tv += dv; tx += dx; tw += dw
        if (du + ds == 0 && dv == 0) continue
        printf "%-22s %8d %12.2f %11.2f %11.2f %13.2f %14.2f %11.2f\n", k, c[k], du + ds, du, ds, dv, dx, dw
      }
      printf "%-22s %8s %12.2f %11.2f %11.2f %13.2f %14.2f %11.2f\n", "all", "", tu + ts, tu, ts, tv, tx, tw
    }' "$WORK/before" "$WORK/after"
done
echo
echo "Switchyard's mirrors (all must be completed):"
curl -s http://127.0.0.1:18111/metrics | grep -E '^switchyard_(shadow_requests_total|shadow_drops_total|comparisons_total)' | grep -v ' 0$' | sed 's/^/  /'
echo
echo "CPU from /proc/PID/task/*/stat (clock ticks: coarse for a thread that runs little); wake-ups and"
echo "preemptions from voluntary_ctxt_switches and nonvoluntary_ctxt_switches in /proc/PID/task/*/status."
