#!/usr/bin/env bash
# Do mirrors lose to live traffic under CPU contention? Switchyard (1 worker)
# is pinned, with all its threads, to one core and saturated by wrk (1
# thread, 50 connections) from the other core, where old runs too:
# once with mirroring off, once with every request mirrored to new and its
# twin and compared (bodies of about 4 KB of JSON with a difference, so each
# comparison costs real CPU). Prints live req/s, p50 and p99 of both runs,
# their ratios, and what happened to the mirrors.
#
# Also prints the CPU time each kind of Switchyard thread got on its core
# during the run (live workers, mirrors, analysis), from /proc. Mirrors and
# the analysis run at nice 19 on their own threads: under contention the
# live workers should keep the core, and mirrors that do not fit show as
# drops. Note that the mirrors' own requests also land on the origins,
# which share the load generator's core: that, not Switchyard's core, is
# where part of the throughput goes on a 2-core machine.
# BIN=path/to/another/switchyard compares another build.
#
# Needs wrk (apt-get install -y wrk). Not run by CI.
# Usage: bench/contention.sh [seconds=15]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk"; exit 1; }
cargo build --release --quiet --bin switchyard --example bench-tools
BIN=${BIN:-target/release/switchyard}
TOOLS=target/release/examples/bench-tools
. bench/lib.sh

# old serves live traffic from the load's core. new and the twin only answer
# mirrors: they run on Switchyard's core at nice 19 too, so the mirrors'
# whole cost lands on the core under test, at low priority, and none of it
# on the load generator's core.
taskset -c 1 $TOOLS origin --port 18381 --items 50 & pids+=($!)
taskset -c 0 nice -n 19 $TOOLS origin --port 18382 --items 50 --variant 2 & pids+=($!)
taskset -c 0 nice -n 19 $TOOLS origin --port 18383 --items 50 & pids+=($!)
for p in 18381 18382 18383; do wait_port $p; done

run() { # name shadow_percent port
  cat > "$WORK/$1.yaml" <<CONF
listen: "127.0.0.1:$3"
admin: { listen: "127.0.0.1:$(( $3 + 1 ))" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:18381" }
  new: { url: "http://127.0.0.1:18382" }
  old_twin: { url: "http://127.0.0.1:18383" }
rollout: { percent: 0, sticky: none }
shadow: { percent: $2 }
logging: { level: error }
CONF
  taskset -c 0 $BIN serve -c "$WORK/$1.yaml" 2>/dev/null & local pid=$!; pids+=($pid)
  wait_port "$3"
  taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$3/items/1" >/dev/null   # warm-up
  threads_cpu "$pid" > "$WORK/$1.cpu0"
  taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:$3/items/1" > "$WORK/$1.wrk"
  threads_cpu "$pid" > "$WORK/$1.cpu1"
  sleep 6   # let mirrors in flight finish or time out
  curl -s "http://127.0.0.1:$(( $3 + 1 ))/metrics" > "$WORK/$1.metrics"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# CPU ticks (user + system) per kind of thread: live workers, mirrors, analysis, other.
threads_cpu() {
  for t in /proc/$1/task/*; do
    comm=$(cat "$t/comm"); set -- $(sed 's/.*) //' "$t/stat")
    case "$comm" in switchyard-w*) k=live;; switchyard-shad*) k=mirrors;; switchyard-anal*) k=analysis;; *) k=other;; esac
    echo "$k $(( ${12} + ${13} ))"
  done | awk '{s[$1]+=$2} END {for (k in s) print k, s[k]}'
}
cpu_share() { # run kind: seconds of CPU the kind got during the measured run
  awk -v k="$2" -v hz="$(getconf CLK_TCK)" 'FNR==NR {a[$1]=$2; next} $1==k {printf "%.2f", ($2-a[$1])/hz}' "$WORK/$1.cpu0" "$WORK/$1.cpu1"
}

rps() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.wrk"; }
lat() { awk -v q="$2" '$1 == q {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000} print v}' "$WORK/$1.wrk"; }

run off 0 18390
run on 100 18392

printf "%-22s %12s %10s %10s\n" "live traffic" "req/s" "p50 ms" "p99 ms"
for m in off on; do printf "%-22s %12s %10.2f %10.2f\n" "mirroring $m" "$(rps $m)" "$(lat $m 50%)" "$(lat $m 99%)"; done
awk -v a="$(rps on)" -v b="$(rps off)" -v p="$(lat on 99%)" -v q="$(lat off 99%)" \
  'BEGIN { printf "%-22s %11.2fx %10s %9.2fx\n", "on / off", a/b, "", p/q }'
echo
printf "%-22s %14s %14s %14s\n" "CPU s on Switchyard's core" "live workers" "mirrors" "analysis"
for m in off on; do
  printf "%-26s %10s %14s %14s\n" "mirroring $m" "$(cpu_share $m live)" "$(cpu_share $m mirrors)" "$(cpu_share $m analysis)"
done
awk -v a="$(rps on)" -v b="$(rps off)" -v ca="$(cpu_share on live)" -v cb="$(cpu_share off live)" -v s="$SECS" \
  'BEGIN { printf "live requests per live-worker CPU-second: off %.0f, on %.0f (%.2fx)\n", b*s/cb, a*s/ca, (a*s/ca)/(b*s/cb) }'
echo
echo "mirrors during the 'on' run (to new; the twin is alike):"
grep '^switchyard_shadow_requests_total{backend="new"' "$WORK/on.metrics" | grep -v ' 0$' | sed 's/^/  /' || true
grep -E '^switchyard_shadow_drops_total|^switchyard_comparisons_total' "$WORK/on.metrics" | grep -v ' 0$' | sed 's/^/  /' || true
