#!/usr/bin/env bash
# TLS termination, in one run, on this machine: NGINX (1 worker) and
# Switchyard (1 worker thread), the same ECDSA P-256 certificate, both in
# front of the same NGINX origin over plain HTTP. Each proxy is pinned to
# its own CPU, the clients and the origin to the other. Measures
#   - full TLS handshakes per second: `openssl s_time -new` (one connection
#     at a time, no session reuse), and the proxy's CPU per handshake;
#   - requests per second over TLS with keep-alive: wrk, 1 thread,
#     50 connections; and requests per CPU-second of the proxy.
# Prints each figure and Switchyard's ratio to NGINX's. HEADERS=same has
# NGINX write the headers Switchyard writes (bench/same-headers.sh).
#
# Needs nginx, wrk and openssl (apt-get install -y nginx wrk openssl). Not run by CI.
# Usage: bench/tls.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
for t in nginx wrk openssl; do command -v $t >/dev/null || { echo "needs $t: apt-get install -y nginx wrk openssl"; exit 1; }; done
cargo build --release --quiet
BIN=${BIN:-target/release/switchyard}
source bench/lib.sh
PROXY_CPU=0
LOAD_CPU=1

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=shop.example -addext "subjectAltName=DNS:shop.example,IP:127.0.0.1" \
  -keyout "$WORK/shop.key" -out "$WORK/shop.pem" 2>/dev/null
chmod a+r "$WORK/shop.key"

nginx_origin 18081

nginx_proxy "listen 127.0.0.1:18443 ssl http2;
    ssl_certificate $WORK/shop.pem;
    ssl_certificate_key $WORK/shop.key;
    ssl_protocols TLSv1.2 TLSv1.3;"

cat > "$WORK/sy.yaml" <<CONF
listen: ""
admin: { listen: "127.0.0.1:18101" }
server: { workers: 1 }
tls:
  listen: "127.0.0.1:18444"
  certificates: [{ cert_file: "$WORK/shop.pem", key_file: "$WORK/shop.key" }]
backends:
  old: { url: "http://127.0.0.1:18081" }
  new: { url: "http://127.0.0.1:18081" }
rollout: { percent: 0, sticky: none }
logging: { level: warn }
CONF

declare -A PID
taskset -c $LOAD_CPU nginx -c "$WORK/origin.conf" -p "$WORK" & pids+=($!); PID[origin]=$!
taskset -c $PROXY_CPU nginx -c "$WORK/proxy.conf" -p "$WORK" & pids+=($!); PID[nginx]=$!
taskset -c $PROXY_CPU "$BIN" serve -c "$WORK/sy.yaml" --reset-state & pids+=($!); PID[switchyard]=$!
for p in 18081 18443 18444; do wait_port $p; done
for p in 18443 18444; do
  code=$(curl -sk -o /dev/null -w "%{http_code}" "https://127.0.0.1:$p/item")
  [[ $code == 200 ]] || { echo "port $p answers $code"; exit 1; }
done

ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)
declare -A HS HS_CPU RPS RPS_CPU
handshakes() { # name port
  local t0 t1 out n
  t0=$(ticks "${PID[$1]}")
  out=$(taskset -c $LOAD_CPU openssl s_time -connect "127.0.0.1:$2" -new -time "$SECS" 2>/dev/null)
  t1=$(ticks "${PID[$1]}")
  n=$(awk '/connections in .* real seconds/ {print $1; exit}' <<<"$out")
  HS[$1]=$(awk -v n="$n" -v s="$SECS" 'BEGIN { print n / s }')
  HS_CPU[$1]=$(awk -v n="$n" -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN { print (t > 0) ? n / (t / hz) : 0 }')
}
requests() { # name port
  local t0 t1 out n
  taskset -c $LOAD_CPU wrk -t1 -c50 -d2s "https://127.0.0.1:$2/item" >/dev/null
  t0=$(ticks "${PID[$1]}")
  out=$(taskset -c $LOAD_CPU wrk -t1 -c50 -d"${SECS}s" "https://127.0.0.1:$2/item")
  t1=$(ticks "${PID[$1]}")
  n=$(awk '/^ *[0-9]+ requests in/ {print $1}' <<<"$out")
  RPS[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  RPS_CPU[$1]=$(awk -v n="$n" -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN { print (t > 0) ? n / (t / hz) : 0 }')
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "$1: $(grep 'Non-2xx\|Socket errors' <<<"$out")"; fi
}
handshakes nginx 18443
handshakes switchyard 18444
requests nginx 18443
requests switchyard 18444

printf '\n%-11s %14s %18s %16s %18s\n' proxy "handshakes/s" "handshakes/CPU-s" "requests/s (TLS)" "requests/CPU-s"
for t in nginx switchyard; do
  printf '%-11s %14.0f %18.0f %16.0f %18.0f\n' "$t" "${HS[$t]}" "${HS_CPU[$t]}" "${RPS[$t]}" "${RPS_CPU[$t]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
printf '%-11s %14s %18s %16s %18s\n' "×nginx" "$(ratio "${HS[switchyard]}" "${HS[nginx]}")" "$(ratio "${HS_CPU[switchyard]}" "${HS_CPU[nginx]}")" \
  "$(ratio "${RPS[switchyard]}" "${RPS[nginx]}")" "$(ratio "${RPS_CPU[switchyard]}" "${RPS_CPU[nginx]}")"
echo
echo "handshakes: full TLS 1.3 handshakes (ECDSA P-256), one connection at a time, no resumption."
echo "requests: keep-alive over TLS, 50 connections; /CPU-s is per second of the proxy's own CPU."
if [[ ${HEADERS:-bare} == same ]]; then echo "HEADERS=same: NGINX writes Switchyard's headers too."; fi
