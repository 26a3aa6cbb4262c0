#!/usr/bin/env bash
# The guard on real loopback rollouts: N rollouts of identical backends (A/A)
# and N per fault (new answers 5 % 500s; new 30 % slower, 13 ms against
# 10 ms; new's body differs in 10 % of answers). Each run starts a fresh
# gateway with the plan [1, 5, 25, 50, 100], step_every 3 s, guard
# { interval 1s, window 10s, min_requests 20, min_comparisons 50 }, every
# request mirrored, an old twin, and ~250 req/s from random users; it ends
# when the rollout is promoted or rolled back (or after 90 s: "held").
#
# Prints, per scenario: rollbacks, promotions, holds, and for rollbacks the
# median time and live requests to new until the rollback, and which check.
# Targets: 0 rollbacks in 20 A/A runs; every fault caught.
#
# Not run by CI. Usage: bench/guard.sh [aa_runs=20] [fault_runs=10]
# (0 skips those scenarios). BIN=path/to/switchyard compares another build
# with the same config (the config uses only keys every version knows).
# BUSY=N runs N busy loops beside it all, as noisy neighbours on a shared
# machine: latency jitters, which is what tempts a guard into false alarms.
set -euo pipefail
cd "$(dirname "$0")/.."
AA_RUNS=${1:-20}
FAULT_RUNS=${2:-10}
RATE=250
LONGEST=90
cargo build --release --quiet --bin switchyard --example bench-tools
BIN=${BIN:-target/release/switchyard}
TOOLS=target/release/examples/bench-tools
. bench/lib.sh
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# One run: origins with the given arguments, a fresh gateway, the plan
# started, load until it ends. Prints "outcome seconds requests_to_new check".
run() {
  local old_args=$1 new_args=$2 op=()
  $TOOLS origin --port 18381 $old_args & op+=($!)
  $TOOLS origin --port 18383 $old_args & op+=($!)
  $TOOLS origin --port 18382 $new_args & op+=($!)
  rm -rf "$WORK/state"; mkdir -p "$WORK/state"
  cat > "$WORK/guard.yaml" <<CONF
listen: "127.0.0.1:18390"
admin: { listen: "127.0.0.1:18391" }
backends:
  old: { url: "http://127.0.0.1:18381" }
  new: { url: "http://127.0.0.1:18382" }
  old_twin: { url: "http://127.0.0.1:18383" }
rollout:
  percent: 0
  sticky: "header:x-user-id"
  state_file: "$WORK/state/rollout.json"
  steps: [1, 5, 25, 50, 100]
  step_every: "3s"
  guard: { interval: "1s", window: "10s", min_requests: 20, min_comparisons: 50 }
shadow: { percent: 100 }
logging: { level: warn }
CONF
  $BIN serve -c "$WORK/guard.yaml" 2> "$WORK/switchyard.log" & local sy=$!
  for p in 18381 18382 18383 18390 18391; do wait_port $p; done
  $TOOLS load --url http://127.0.0.1:18390 --rate "$RATE" --seconds "$LONGEST" > /dev/null 2>&1 & local load=$!
  curl -s -X POST -H 'content-type: application/json' -d '{"reason":"bench"}' http://127.0.0.1:18391/step > /dev/null
  local start phase="" now
  start=$(date +%s.%N)
  while true; do
    phase=$(curl -s http://127.0.0.1:18391/status | json 'd["phase"]')
    now=$(date +%s.%N)
    if [[ $phase == rolled_back || $phase == promoted ]]; then break; fi
    if (( $(echo "$now - $start > $LONGEST" | bc) )); then phase=held; break; fi
    sleep 0.2
  done
  local secs new why
  secs=$(echo "$now - $start" | bc)
  new=$(curl -s http://127.0.0.1:18391/metrics | awk '/^switchyard_requests_total\{backend="new"/ {s += $2} END {print s + 0}')
  why=$(curl -s http://127.0.0.1:18391/status | json '(d.get("last_change") or {}).get("why","").split(" failed")[0].replace("guard: ","") if d["phase"]=="rolled_back" else "-"')
  kill $load $sy "${op[@]}" 2>/dev/null || true
  wait $load $sy "${op[@]}" 2>/dev/null || true
  printf "%s %.1f %s %s\n" "$phase" "$secs" "$new" "$why"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print a[int((NR + 1) / 2)]}'; }

scenario() {
  local name=$1 runs=$2 old_args=$3 new_args=$4
  ((runs > 0)) || return 0
  local file="$WORK/runs.$(echo "$name" | tr -c 'A-Za-z0-9' '_')"
  : > "$file"
  for i in $(seq 1 "$runs"); do
    run "$old_args" "$new_args" | tee -a "$file" | while read -r line; do echo "  $name run $i: $line"; done
  done
  local back prom held secs reqs checks
  back=$(grep -c '^rolled_back' "$file" || true)
  prom=$(grep -c '^promoted' "$file" || true)
  held=$(grep -c '^held' "$file" || true)
  secs=$(awk '$1 == "rolled_back" {print $2}' "$file" | median)
  reqs=$(awk '$1 == "rolled_back" {print $3}' "$file" | median)
  checks=$(awk '$1 == "rolled_back" {print $4}' "$file" | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}')
  printf "%-22s %5s %11s %9s %6s %12s %15s  %s\n" "$name" "$runs" "$back" "$prom" "$held" "$secs" "$reqs" "$checks" >> "$WORK/table"
}

BUSY=${BUSY:-0}
for _ in $(seq 1 "$BUSY"); do sh -c 'while :; do :; done' & pids+=($!); done
echo "guard bench: $BIN, $AA_RUNS A/A runs, $FAULT_RUNS per fault, ${RATE} req/s, $BUSY busy loops beside"
scenario "A/A (identical)" "$AA_RUNS" "" ""
scenario "5% errors" "$FAULT_RUNS" "" "--errors 5"
scenario "+30% latency" "$FAULT_RUNS" "--delay-ms 10" "--delay-ms 13"
scenario "10% differing bodies" "$FAULT_RUNS" "" "--differ 10"
echo
printf "%-22s %5s %11s %9s %6s %12s %15s  %s\n" "scenario" "runs" "rolled back" "promoted" "held" "median s" "median to new" "by check"
cat "$WORK/table"
