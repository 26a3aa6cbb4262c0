#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, on the stable
# toolchain with --sanitizer none) of the parsers that take untrusted input:
# backend response heads and chunked bodies (src/proxy/wire/), the config
# loader, the diff engine, and the path normalisation routes and rules use.
# Each target runs for SECONDS from the committed seed corpus in
# fuzz/corpus/ (read only) and the inputs earlier runs found, kept in
# fuzz/work/ (not committed). Prints the executions of each run and anything
# found (a crash stops the run with the input saved in fuzz/artifacts/: add
# it to fuzz/corpus/TARGET/ once fixed).
#
# Needs cargo-fuzz: cargo install cargo-fuzz. Not run by CI.
# Usage: bench/fuzz.sh [seconds per target=60] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(response_head chunked config diff path)
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz"; exit 1; }
cargo fuzz build --sanitizer none -O
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "work/$t"
  log=$(mktemp)
  if cargo fuzz run --sanitizer none -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    printf "%-14s %10s executions in %ss, coverage %s edges: nothing found\n" "$t" "${runs:-?}" "$SECS" "${cov:-?}"
  else
    status=1
    printf "%-14s FOUND something:\n" "$t"
    grep -E 'ERROR|panicked|Test unit written|SUMMARY' "$log" | head -20 | sed 's/^/  /'
  fi
  rm -f "$log"
done
exit $status
