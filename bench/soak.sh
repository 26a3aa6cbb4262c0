#!/usr/bin/env bash
# Soak: a steady open-loop load through Switchyard with mirroring of every
# request to a new side that fails 10 % of the time, in turn: slow (10 s),
# reset mid-answer, 10 MB answers, and gzip bombs (100 KB decoding to 100 MB);
# old has a twin. Switchyard's RSS, open fds and threads are sampled every
# 10 s. At the end it prints whether each stayed flat (the last third of the
# run against the middle third) and the live error count, which must be 0:
# nothing the shadow side does may reach live traffic.
#
# Not run by CI. Usage: bench/soak.sh [seconds=600] [requests/s=300]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
RATE=${2:-300}
cargo build --release --quiet --bin switchyard --example bench-tools
BIN=target/release/switchyard
TOOLS=target/release/examples/bench-tools
. bench/lib.sh

$TOOLS origin --port 18281 & pids+=($!)
$TOOLS origin --port 18283 & pids+=($!)
$TOOLS origin --port 18282 --faults 10 & pids+=($!)
cat > "$WORK/soak.yaml" <<CONF
listen: "127.0.0.1:18290"
admin: { listen: "127.0.0.1:18291" }
backends:
  old: { url: "http://127.0.0.1:18281" }
  new: { url: "http://127.0.0.1:18282" }
  old_twin: { url: "http://127.0.0.1:18283" }
rollout: { percent: 0, sticky: "header:x-user-id" }
shadow: { percent: 100 }
logging: { level: warn }
CONF
$BIN serve -c "$WORK/soak.yaml" 2> "$WORK/switchyard.log" & SY=$!; pids+=($SY)
for p in 18281 18282 18283 18290 18291; do wait_port $p; done

$TOOLS load --url http://127.0.0.1:18290 --rate "$RATE" --seconds "$SECS" > "$WORK/load.out" & LOAD=$!; pids+=($LOAD)

sample() {
  local rss threads fds
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$SY/status)
  threads=$(awk '/^Threads/ {print $2}' /proc/$SY/status)
  fds=$(ls /proc/$SY/fd | wc -l)
  echo "$1 $rss $fds $threads" >> "$WORK/samples"
  printf "%6ss  rss %8s kB  fds %5s  threads %3s\n" "$1" "$rss" "$fds" "$threads"
}
echo "soak: ${SECS}s at ${RATE} req/s; new fails 10 % of mirrors (slow, reset, 10 MB, gzip bomb)"
t=0
while kill -0 $LOAD 2>/dev/null; do
  sample $t
  sleep 10
  t=$((t + 10))
done
wait $LOAD || true
sleep 6   # mirrors still in flight finish or time out (shadow.timeout 5 s)
sample $t

echo
echo "load: $(cat "$WORK/load.out")"
metrics=$(curl -s http://127.0.0.1:18291/metrics)
echo "mirrors to new by outcome:"
echo "$metrics" | grep '^switchyard_shadow_requests_total{backend="new"' | grep -v ' 0$' | sed 's/^/  /'
echo "$metrics" | grep -E '^switchyard_shadow_drops_total|^switchyard_comparisons_total' | grep -v ' 0$' | sed 's/^/  /'
echo "  upstream errors (live): $(echo "$metrics" | awk '/^switchyard_upstream_errors_total/ {s+=$2} END {print s+0}')"

# Flat: the last third's mean within 10 % (and a small absolute slack) of
# the middle third's.
awk -v n="$(wc -l < "$WORK/samples")" '
  { t[NR]=$1; rss[NR]=$2; fds[NR]=$3; thr[NR]=$4 }
  END {
    a=int(n/3)+1; b=int(2*n/3); c=b+1;
    for (i=a;i<=b;i++) { mr+=rss[i]; mf+=fds[i]; mt+=thr[i]; m++ }
    for (i=c;i<=n;i++) { lr+=rss[i]; lf+=fds[i]; lt+=thr[i]; l++ }
    mr/=m; mf/=m; mt/=m; lr/=l; lf/=l; lt/=l;
    printf "RSS     middle %8.0f kB  last %8.0f kB  %s\n", mr, lr, (lr <= mr*1.10 + 20480) ? "flat" : "GROWING";
    printf "fds     middle %8.1f     last %8.1f     %s\n", mf, lf, (lf <= mf*1.10 + 20) ? "flat" : "GROWING";
    printf "threads middle %8.1f     last %8.1f     %s\n", mt, lt, (lt <= mt + 2) ? "flat" : "GROWING";
  }' "$WORK/samples"
errors=$(awk '{for (i=1;i<=NF;i++) if ($i=="non_2xx" || $i=="failed") s+=$(i+1)} END {print s+0}' "$WORK/load.out")
echo "live errors: $errors (must be 0)"
