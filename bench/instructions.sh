#!/usr/bin/env bash
# User-space instructions per proxied request, NGINX vs Switchyard, counted by
# callgrind in one run. Unlike wall-clock figures on a shared 2-core machine,
# instruction counts repeat run to run, so small changes to the request path
# can be measured. Kernel work (syscalls) is not counted: compare it with
# `strace -c -f` (both proxies make 2 writev + 2 recvfrom per request).
#
# `close` counts a request on a connection of its own (`Connection: close`):
# accept, the first read, the close.
#
# `mirror` counts a mirrored request instead: NGINX's `mirror` (the second
# answer dropped) against Switchyard with shadow 100 % (both answers read,
# compared and reported), all threads, at an open-loop RATE (default 300)
# req/s from bench-tools, so that neither sheds a mirror under callgrind.
# HEADERS=same has NGINX write the headers Switchyard writes by default
# (bench/same-headers.sh), which its bare proxy_pass leaves out.
# KEEP=DIR keeps each proxy's callgrind file there for callgrind_annotate.
# THREADS=1 also splits Switchyard's count by thread (live worker, mirrors,
# analysis, the rest), named by what runs on each.
# CACHESIM=1 also simulates the caches (callgrind's --cache-sim, this
# machine's cache sizes): first-level instruction and data misses per
# request, which say why CPU time can differ more than instructions do.
#
# Needs nginx, wrk and valgrind. Not run by CI.
# Usage: bench/instructions.sh [seconds=10] [plain|close|mirror]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
MODE=${2:-plain}
[[ $MODE =~ ^(plain|close|mirror)$ ]] || { echo "unknown mode $MODE (plain, close or mirror)"; exit 1; }
source bench/same-headers.sh
RATE=${RATE:-300}
for tool in nginx wrk valgrind callgrind_annotate callgrind_control; do
  command -v $tool >/dev/null || { echo "needs $tool: apt-get install -y nginx wrk valgrind"; exit 1; }
done
cargo build --release --quiet --bin switchyard --example bench-tools
BIN=${BIN:-target/release/switchyard}
TOOLS=target/release/examples/bench-tools
source bench/lib.sh
chmod 755 "$WORK"   # nginx workers run as nobody

mkdir -p "$WORK/www"
printf '%s' '{"id":42,"name":"kettle","price":12.5,"tags":["home","kitchen"],"stock":{"count":17,"warehouse":"AMS"}}' > "$WORK/www/item.json"
chmod -R a+rX "$WORK/www"
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin.err warn;
events { worker_connections 1024; }
http { access_log off; default_type application/json; keepalive_requests 1000000;
  server { listen 127.0.0.1:18281; listen 127.0.0.1:18282; root $WORK/www; location / { try_files /item.json =404; } } }
CONF
# One process, so callgrind sees all of NGINX's work.
cat > "$WORK/proxy.conf" <<CONF
worker_processes 1; master_process off; daemon off; pid $WORK/proxy.pid; error_log $WORK/proxy.err warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:18281; keepalive 64; }
  upstream other { server 127.0.0.1:18282; keepalive 64; }
  $SAME_HEADERS_HTTP
  server { listen 127.0.0.1:18290;
    location / { $( [[ $MODE == mirror ]] && echo 'mirror /mirror; mirror_request_body off;' ) proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      $SAME_HEADERS_LOCATION $SAME_HEADERS_SIDE }
    location = /mirror { internal; proxy_pass http://other\$request_uri; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$WORK/sy.yaml" <<CONF
listen: "127.0.0.1:18300"
admin: { listen: "127.0.0.1:18301" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:18281" }
  new: { url: "http://127.0.0.1:18282" }
logging: { level: warn }
shadow: { percent: $( [[ $MODE == mirror ]] && echo 100 || echo 0 ) }
CONF

nginx -c "$WORK/origin.conf" -p "$WORK" & pids+=($!)
wait_port 18281

# What a thread of Switchyard is, from the code it spent its count in.
thread_role() {
  local top
  top=$(callgrind_annotate --inclusive=yes "$1" 2>/dev/null)
  if grep -q 'pipeline::Worker::serve' <<<"$top"; then echo "live worker"
  elif grep -q 'shadow::job' <<<"$top"; then echo "mirrors"
  elif grep -q 'compare::' <<<"$top"; then echo "analysis"
  else echo "other"; fi
}

declare -A REQ I1 D1
count() { # name port command...
  local name=$1 port=$2; shift 2
  CG_OPTS=()
  [[ ${THREADS:-} == 1 && $name == switchyard ]] && CG_OPTS=(--separate-threads=yes)
  [[ ${CACHESIM:-} == 1 ]] && CG_OPTS+=(--cache-sim=yes)
  count_start "$name" "$port" "$@"
  if [[ $MODE == mirror ]]; then
    REQ[$name]=$($TOOLS load --url "http://127.0.0.1:$port/api" --rate "$RATE" --seconds "$SECS" | awk '/^sent/ {print $2}')
    [[ $name == switchyard ]] && curl -s http://127.0.0.1:18301/metrics | grep -E '^switchyard_(shadow_drops_total|comparisons_total)' | awk '$2 > 0 {print "  " $0}'
  else
    local close=()
    [[ $MODE == close ]] && close=(-H "Connection: close")
    REQ[$name]=$(wrk -t1 -c10 -d"${SECS}s" "${close[@]}" "http://127.0.0.1:$port/item" | awk '/requests in/ {print $1}')
  fi
  count_stop "$name"
  local f ir misses i1=0 d1=0
  : > "$WORK/$name.threads"
  for f in "$WORK/$name.cg" "$WORK/$name.cg"-*; do
    [[ -f $f ]] || continue
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') || continue
    [[ -n $ir ]] || continue
    if [[ ${CACHESIM:-} == 1 ]]; then
      # Totals in the order Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
      misses=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); v[++n] = $i } print v[4], v[5] + v[6] }')
      i1=$((i1 + ${misses% *})); d1=$((d1 + ${misses#* }))
    fi
    echo "$ir $(thread_role "$f")" >> "$WORK/$name.threads"
  done
  I1[$name]=$i1; D1[$name]=$d1
  return 0
}
count nginx 18290 nginx -c "$WORK/proxy.conf" -p "$WORK"
count switchyard 18300 "$BIN" serve -c "$WORK/sy.yaml" --reset-state

echo
[[ $MODE == mirror ]] && echo "every request mirrored (NGINX: mirror, answer dropped; Switchyard: shadow 100 %, compared)"
[[ $MODE == close ]] && echo "a connection per request (Connection: close)"
[[ ${HEADERS:-bare} == same ]] && echo "NGINX writing the headers Switchyard writes (HEADERS=same, bench/same-headers.sh)"
printf '%-12s %10s %16s %12s\n' proxy requests "instructions/req" "× nginx"
for p in nginx switchyard; do
  per=$(awk -v i="${IR[$p]}" -v r="${REQ[$p]}" 'BEGIN { printf "%.0f", i / r }')
  # Counting that never switched on reads as a few instructions a request.
  [[ $per -ge 1000 ]] || { echo "$p: $per instructions a request: callgrind did not count the load; run again"; exit 1; }
  base=$(awk -v i="${IR[nginx]}" -v r="${REQ[nginx]}" 'BEGIN { print i / r }')
  printf '%-12s %10s %16s %12.2f\n' "$p" "${REQ[$p]}" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN { print a / b }')"
done
if [[ ${THREADS:-} == 1 ]]; then
  echo
  echo "Switchyard by thread (instructions per request):"
  awk -v r="${REQ[switchyard]}" '{ ir = $1; $1 = ""; sub(/^ /, ""); by[$0] += ir } END { for (k in by) printf "  %-12s %10.0f\n", k, by[k] / r }' "$WORK/switchyard.threads" | sort -k1,1
fi
if [[ ${CACHESIM:-} == 1 ]]; then
  echo
  echo "simulated first-level cache misses per request (instruction; data, read + write)"
  printf '%-12s %12s %8s %12s %8s\n' proxy "I1 misses" "× nginx" "D1 misses" "× nginx"
  for p in nginx switchyard; do
    awk -v p="$p" -v i="${I1[$p]}" -v d="${D1[$p]}" -v r="${REQ[$p]}" -v bi="${I1[nginx]}" -v bd="${D1[nginx]}" -v br="${REQ[nginx]}" \
      'BEGIN { printf "%-12s %12.0f %8.2f %12.0f %8.2f\n", p, i / r, (i / r) / (bi / br), d / r, (d / r) / (bd / br) }'
  done
fi
