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
# A rollout change, for the charts' markers.
req = urllib.request.Request(sys.argv[1] + "/rollout", data=b'{"percent": 20, "reason": "browser check"}',
                             method="PUT", headers={"content-type": "application/json"})
urllib.request.urlopen(req, timeout=5).read()
PY

FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$PROFILE" --enable-logging=stderr --v=0)
"$CHROME" "${FLAGS[@]}" --dump-dom "$URL/report" >"$OUT/report.dom.html" 2>"$OUT/console.log"
"$CHROME" "${FLAGS[@]}" --window-size=1400,2600 --screenshot="$OUT/report.png" "$URL/report" >/dev/null 2>>"$OUT/console.log"

fail=0
# Layout at 1,024 and 1,400 px: the report itself has no script, so a copy
# with a measuring script added is loaded from a file. Every sample is
# opened; nothing may stick out of the page, and the new side of every
# sample must end inside its section (wide bodies scroll in their box).
python3 - "$URL" "$OUT/measure.html" <<'PY'
import sys, urllib.request
html = urllib.request.urlopen(sys.argv[1] + "/report", timeout=10).read().decode()
script = """<script>
addEventListener('load', () => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const bad = [];
  const page = document.documentElement;
  if (page.scrollWidth > innerWidth + 1) bad.push('page is ' + page.scrollWidth + 'px wide in ' + innerWidth);
  document.querySelectorAll('.sides').forEach((s, i) => {
    const section = s.closest('section').getBoundingClientRect();
    const newSide = s.lastElementChild.getBoundingClientRect();
    if (newSide.right > section.right + 1) bad.push('sample ' + i + ': new side ends at ' + Math.round(newSide.right) + ' past ' + Math.round(section.right));
  });
  document.body.setAttribute('data-layout', bad.length ? bad.join('; ') : 'ok');
});
</script>"""
open(sys.argv[2], "w").write(html.replace("</body>", script + "</body>"))
PY
for width in 1024 1400; do
  "$CHROME" "${FLAGS[@]}" --window-size="$width,2000" --virtual-time-budget=3000 --dump-dom "file://$PWD/$OUT/measure.html" \
    >"$OUT/layout-$width.html" 2>>"$OUT/console.log"
  layout=$(grep -o 'data-layout="[^"]*"' "$OUT/layout-$width.html" || echo 'data-layout="(the script did not run)"')
  [[ "$layout" == 'data-layout="ok"' ]] || { echo "layout at ${width}px: $layout"; fail=1; }
done
"$CHROME" "${FLAGS[@]}" --window-size=1024,2600 --screenshot="$OUT/report-1024.png" "$URL/report" >/dev/null 2>>"$OUT/console.log"

check() { grep -q -- "$1" "$OUT/report.dom.html" || { echo "missing in rendered page: $1"; fail=1; }; }
check '<table id="endpoints">'
check '<table class="fields">'
check '<svg class="timeline"'
check '<svg class="latency"'
check '<rect '
check '<polyline '
check 'class="tag real"'
check 'GET /users/{id}'
check 'id="generated"'
check 'class="change"'
check 'details class="folded"'
check 'class="quiet"'
if grep -E 'CONSOLE|Uncaught|Failed to load resource' "$OUT/console.log"; then
  echo "console errors while loading the report"; fail=1
fi
[[ -s "$OUT/report.png" ]] || { echo "no screenshot"; fail=1; }
if ((fail)); then exit 1; fi
echo "browser check passed: screenshot at $OUT/report.png"
