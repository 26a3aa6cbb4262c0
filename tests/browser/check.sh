#!/usr/bin/env bash
# Browser check of the diff report: starts the demo (planted differences),
# loads /report in headless Chromium, checks the tables and SVG charts are
# rendered and nothing was logged to the console, and saves a screenshot.
# Usage: tests/browser/check.sh [path/to/switchyard]   (run by .ci/run)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/debug/switchyard}
OUT=target/browser
mkdir -p "$OUT"
CHROME=$(command -v chromium || command -v chromium-browser || true)
[[ -n "$CHROME" ]] || { echo "chromium is not installed"; exit 1; }

ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" demo --port 0 --admin-port "$ADMIN" --requests 2000 --rate 1000 --stay >"$OUT/demo.log" 2>&1 &
DEMO=$!
PROFILE=$(mktemp -d)
trap 'kill $DEMO 2>/dev/null || true; rm -rf "$PROFILE"' EXIT

URL="http://127.0.0.1:$ADMIN"
python3 - "$URL" <<'PY'
import json, sys, time, urllib.request
url = sys.argv[1] + "/report.json"
deadline = time.time() + 60
while True:
    try:
        r = json.load(urllib.request.urlopen(url, timeout=2))
        if r["headline"]["comparisons"] >= 1500 and r["headline"]["real_diffs"] > 0:
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("the demo produced no comparisons in 60 s")
    time.sleep(0.2)
PY

FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$PROFILE" --enable-logging=stderr --v=0)
"$CHROME" "${FLAGS[@]}" --dump-dom "$URL/report" >"$OUT/report.dom.html" 2>"$OUT/console.log"
"$CHROME" "${FLAGS[@]}" --window-size=1400,2600 --screenshot="$OUT/report.png" "$URL/report" >/dev/null 2>>"$OUT/console.log"

fail=0
check() { grep -q -- "$1" "$OUT/report.dom.html" || { echo "missing in rendered page: $1"; fail=1; }; }
check '<table id="endpoints">'
check '<table class="fields">'
check '<svg class="timeline"'
check '<svg class="latency"'
check '<rect '
check '<polyline '
check 'class="tag real"'
check 'GET /users/{id}'
if grep -E 'CONSOLE|Uncaught|Failed to load resource' "$OUT/console.log"; then
  echo "console errors while loading the report"; fail=1
fi
[[ -s "$OUT/report.png" ]] || { echo "no screenshot"; fail=1; }
if ((fail)); then exit 1; fi
echo "browser check passed: screenshot at $OUT/report.png"
