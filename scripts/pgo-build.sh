#!/usr/bin/env bash
# A profile-guided build of the gateway: target/pgo/release/switchyard.
#
# 1. builds an instrumented gateway (and bench-tools, which drives it);
# 2. runs it against two local origins while `bench-tools train` sends it
#    the traffic mix bench/tools/train.rs describes, once with no modules
#    (plain proxying, TLS with ALPN) and once with the edge's work and
#    mirroring (100 path rules, a rate limit, a sticky 50 % split, the JSON
#    access log, shadow 50 % with diffs);
# 3. merges the counts and builds the release binary with them, and fails
#    if any of the gateway's functions found no counts under its name
#    (target/pgo/build.log lists them).
#
# What it buys, measured (bench/RESULTS.md): about a fifth fewer
# instructions per request and half the instruction-cache misses, because
# the compiler lays out and inlines the request path for the paths taken.
# It takes two release builds (22 minutes on 2 cores from cold) and needs
# `llvm-profdata` from the same LLVM as rustc: rustup's `llvm-tools`
# component, added here when missing. Loopback ports 18700-18707 must be free
# (PGO_PORT moves them). SECS sets each training run's length (default 20).
# Usage: scripts/pgo-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-20}
PORT=${PGO_PORT:-18700}

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x $profdata ]]; then
  rustup component add llvm-tools >&2 || {
    echo "pgo-build: needs llvm-profdata from rustc's own LLVM: run 'rustup component add llvm-tools'" >&2
    exit 1
  }
fi

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Fixed paths in RUSTFLAGS, so a second run reuses the first one's build
# of the dependencies.
COUNTS=$PWD/target/pgo-gen/counts
rm -rf "$COUNTS"
echo "pgo-build: 1/3 the instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="-Cprofile-generate=$COUNTS" \
  cargo build --release --locked --target-dir target/pgo-gen --bin switchyard --example bench-tools
GATEWAY=target/pgo-gen/release/switchyard
TOOLS=target/pgo-gen/release/examples/bench-tools
# bench-tools is instrumented too (one build, one set of flags); its own
# counts go elsewhere and are not used.
export LLVM_PROFILE_FILE="$COUNTS/tools/%p.profraw"

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "pgo-build: nothing listens on 127.0.0.1:$1 after 30 s" >&2
  exit 1
}

OLD=$PORT NEW=$((PORT + 1))
# Answers with the headers a web server sends: the gateway's code for each
# (reading them, passing them on) is taught as it runs in front of one.
"$TOOLS" origin --port "$OLD" --typical-headers & pids+=($!)
"$TOOLS" origin --port "$NEW" --typical-headers --differ 10 & pids+=($!)
wait_port "$OLD"
wait_port "$NEW"
"$TOOLS" cert --dir "$WORK"

cat > "$WORK/plain.yaml" <<CONF
listen: "127.0.0.1:$((PORT + 2))"
admin: { listen: "127.0.0.1:$((PORT + 3))" }
server: { workers: 1 }
tls:
  listen: "127.0.0.1:$((PORT + 4))"
  certificates: [{ cert_file: "$WORK/gateway.pem", key_file: "$WORK/gateway.key" }]
backends:
  old: { url: "http://127.0.0.1:$OLD" }
  new: { url: "http://127.0.0.1:$NEW" }
rollout: { percent: 0, sticky: none }
logging: { level: warn }
CONF
{
  cat <<CONF
listen: "127.0.0.1:$((PORT + 5))"
admin: { listen: "127.0.0.1:$((PORT + 6))" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:$OLD" }
  new: { url: "http://127.0.0.1:$NEW" }
rollout: { percent: 50, sticky: "header:x-user-id" }
shadow: { percent: 50 }
logging: { level: warn, format: json, access_log: true }
modules:
  - rate_limit: { key: "header:x-user-id", rate: 1000000, per: 1s, burst: 1000 }
  - rules:
CONF
  for i in $(seq 0 99); do
    printf '      - { name: r%d, match: { path_regex: "^/admin%d(/|$)" } }\n' "$i" "$i"
  done
} > "$WORK/edge.yaml"

# Runs the instrumented gateway on CONFIG while bench-tools trains it,
# then stops it with SIGINT: the counts are written as it exits.
train() { # config port train-args...
  local config=$1 port=$2
  shift 2
  "$GATEWAY" check -c "$config" >/dev/null
  LLVM_PROFILE_FILE="$COUNTS/gateway/switchyard-%p.profraw" \
    "$GATEWAY" serve -c "$config" --reset-state 2>>"$WORK/gateway.log" &
  local pid=$!
  wait_port "$port"
  "$TOOLS" train --addr "127.0.0.1:$port" --seconds "$SECS" "$@" || {
    echo "pgo-build: training failed; the gateway's log:" >&2
    tail -20 "$WORK/gateway.log" >&2
    exit 1
  }
  kill -INT "$pid"
  wait "$pid" || { echo "pgo-build: the gateway did not stop cleanly (exit $?)" >&2; exit 1; }
}
echo "pgo-build: 2/3 training, ${SECS} s plain and TLS, ${SECS} s with the edge's work" >&2
train "$WORK/plain.yaml" $((PORT + 2)) --tls-addr "127.0.0.1:$((PORT + 4))" --ca "$WORK/ca.pem"
train "$WORK/edge.yaml" $((PORT + 5))

shopt -s nullglob
counts=("$COUNTS"/gateway/switchyard-*.profraw)
[[ ${#counts[@]} -eq 2 ]] || { echo "pgo-build: expected 2 profiles, found ${#counts[@]} in $COUNTS/gateway" >&2; exit 1; }
"$profdata" merge -o "$WORK/merged.profdata" "${counts[@]}"
# Named by its content: cargo sees new counts as new flags and rebuilds.
mkdir -p target/pgo
profile=$PWD/target/pgo/switchyard-$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata
mv "$WORK/merged.profdata" "$profile"

echo "pgo-build: 3/3 the optimized build (target/pgo)" >&2
# The same cargo command as the instrumented build, only the flags differ:
# which targets are built decides the dependencies' features, and so their
# symbol names, and LLVM finds a function's counts by its name. A function
# whose name it does not find is compiled without counts, silently unless
# asked: -pgo-warn-missing-function makes the compiler say so, and the
# gateway's own code (its crates, and the hyper and tokio code instantiated
# in them) must have no such function.
log=$PWD/target/pgo/build.log
mkdir -p target/pgo
RUSTFLAGS="-Cprofile-use=$profile -Cllvm-args=-pgo-warn-missing-function" \
  cargo build --release --locked --target-dir target/pgo --bin switchyard --example bench-tools 2>"$log" || {
  grep -v 'no profile data available' "$log" | tail -30 >&2
  echo "pgo-build: the optimized build failed (its log: $log)" >&2
  exit 1
}
# bench-tools was not trained and build scripts never run in training;
# every other module is the gateway's.
missing=$(grep -oE '^warning: [A-Za-z0-9_]+\.[^:]*: no profile data available for function' "$log" |
  grep -vcE '^warning: (bench_tools|build_script_[a-z_]+)\.' || true)
if [[ $missing -ne 0 ]]; then
  echo "pgo-build: $missing of the gateway's functions found no counts under their name (the" >&2
  echo "  optimized build's symbols differ from the trained build's; the list: grep 'no profile' $log)." >&2
  echo "  Run again on a clean target/pgo-gen and target/pgo; nothing else may change in between." >&2
  exit 1
fi
echo "target/pgo/release/switchyard"
