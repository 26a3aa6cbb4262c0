#!/usr/bin/env bash
# The edge's own work per request, Switchyard against the NGINX it would
# replace, in one run on this machine. Every peer does the same work on each
# request:
#   - 100 path-regex block rules (none matches the load's paths);
#   - a per-user rate limit (keyed on x-user-id) that is never reached;
#   - a sticky 50 % split on the x-user-id header between two origins;
#   - a response header naming the side that answered;
#   - a JSON access log line to a file;
#   - a counter by side and status.
# Peers, each with 1 worker pinned to CPU 0 (wrk and the origins on CPU 1):
#   nginx      native directives: a `map` of the 100 regexes, `limit_req`,
#              `split_clients`, `add_header`, `log_format … escape=json`
#              (buffered: buffer=64k flush=1s). NGINX has no counter by label
#              of its own (stub_status counts totals only): this peer does
#              one less thing than the others.
#   nginx-lua  the FL1 way: rules, split and counters in Lua
#              (libnginx-mod-http-lua: access_by_lua_block with ngx.re.find,
#              ngx.shared.DICT:incr in log_by_lua_block); rate limit, header
#              and log as above
#   switchyard its rules and rate_limit modules, rollout 50 % sticky on the
#              header, x-switchyard-served-by, the JSON access log (stdout to a
#              file), switchyard_requests_total{backend,code_class}
# and again with every GET mirrored to the other side:
#   nginx+mirror       `mirror` to the other origin (the answer is dropped,
#                      nothing is compared)
#   switchyard+shadow  shadow 100 %: both answers compared, diffs recorded
# Load: wrk, 1 thread, 50 connections, each request a random path under
# /api/v1/items/ and a random x-user-id of 10,000. The mirroring peers get an
# open-loop load at MIRROR_RATE req/s (default 3000; bench-tools load, the
# same random paths and users) instead: saturated, Switchyard would shed
# mirrors (they run at nice 19 and yield to live traffic) and so do less
# work than NGINX; below saturation every mirror is sent and compared. The
# mirror ratio counts only if both peers kept up with the rate (answers at
# 95 % of it or more, p99 under MAX_P99_MS, default 500) and Switchyard shed
# no mirror: a peer that fell behind spends CPU on the overload itself. The
# script checks both, and otherwise says why and exits 3. Each open-loop
# run starts once the kernel's TIME_WAIT connections have expired (`settle`
# in lib.sh): NGINX's `mirror` opens a connection to the origin per mirror,
# and the tens of thousands it leaves would tax the next run's connects.
# At 6000 req/s NGINX's `mirror` fell behind in six runs on 2026-12-01
# (p99 5.9 to 24 s; bench/RESULTS.md); at 3000 it keeps up. Below
# saturation each request also pays for waking a proxy that slept, for
# either peer, so the same open loop is run once more on `nginx` and
# `switchyard` without mirrors (nginx@open, switchyard@open): what mirroring
# itself adds is each mirrored figure less its floor, printed last with its
# ratio.
#
# Needs nginx, libnginx-mod-http-lua and wrk
# (apt-get install -y nginx libnginx-mod-http-lua wrk). Not run by CI.
# BIN=path/to/another/switchyard compares another build.
# INSTRUCTIONS=1 counts instead each of nginx, nginx-lua and switchyard's
# user-space instructions per request under callgrind (wrk, 10 connections,
# one NGINX process; needs valgrind): repeatable run to run, unlike CPU time.
# Usage: bench/edge.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk: apt-get install -y nginx libnginx-mod-http-lua wrk"; exit 1; }
LUA_MODULES="load_module /usr/lib/nginx/modules/ndk_http_module.so; load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || { echo "needs NGINX's Lua module: apt-get install -y libnginx-mod-http-lua"; exit 1; }
cargo build --release --quiet --bin switchyard --example bench-tools
TOOLS=target/release/examples/bench-tools
MIRROR_RATE=${MIRROR_RATE:-3000}
BIN=${BIN:-target/release/switchyard}
source bench/lib.sh
PROXY_CPU=0
LOAD_CPU=1

# The 100 rules: four shapes of path a WAF blocks, numbered so none repeats.
RULES=()
for i in $(seq 0 99); do
  case $((i % 4)) in
    0) RULES+=("^/api/v[0-9]+/legacy$i/.*[.]php\$") ;;
    1) RULES+=("^/admin$i(/|\$)") ;;
    2) RULES+=("[.](bak|old|swp)$i\$") ;;
    3) RULES+=("/(etc|proc)/passwd$i") ;;
  esac
done
BLOCKED=/admin97/x   # matched by rule 97, to check every peer has its rules

nginx_origin 18081 18082
# INSTRUCTIONS=1 counts each peer's instructions under callgrind, which
# follows one process: NGINX then runs without its master.
SINGLE=""
[[ ${INSTRUCTIONS:-0} == 1 ]] && SINGLE="master_process off;"
# PCRE's JIT for NGINX's own regexes (`map`), as a tuned edge would run
# it: off by default, and without it every request's 100 rules went
# through PCRE's interpreter (Lua's `ngx.re.find(…, "jo")` JIT-compiles
# its own either way).
NGINX_MAIN="pcre_jit on; $SINGLE"
# HEADERS=same: NGINX also writes the forwarding, request id and Via
# headers Switchyard writes (bench/same-headers.sh); the side header is
# part of every peer's work already.
source bench/same-headers.sh
upstreams="$SAME_HEADERS_HTTP
  upstream old { server 127.0.0.1:18081; keepalive 256; }
  upstream new { server 127.0.0.1:18082; keepalive 256; }
  limit_req_zone \$http_x_user_id zone=per_user:10m rate=1000000r/s;
  log_format edge escape=json '{\"time\":\"\$time_iso8601\",\"method\":\"\$request_method\",\"path\":\"\$uri\",\"side\":\"\$side\",\"status\":\$status,\"latency\":\$request_time,\"bytes\":\$body_bytes_sent,\"user\":\"\$http_x_user_id\"}';"
proxying='limit_req zone=per_user burst=1000 nodelay;
    add_header x-served-by $side always;
    proxy_http_version 1.1; proxy_set_header Connection "";
    '"$SAME_HEADERS_LOCATION"

map_rules=""
for r in "${RULES[@]}"; do map_rules+="\"~$r\" 1; "; done
# native: NAME PORT [MIRROR]
nginx_native() {
  local mirror="" mirror_location=""
  if [[ ${3:-} == mirror ]]; then
    mirror="mirror /mirror; mirror_request_body off;"
    mirror_location="location = /mirror { internal; proxy_pass http://\$other\$request_uri; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
  fi
  nginx_conf "$1" "$upstreams
  map \$uri \$blocked { default 0; $map_rules }
  split_clients \"\${http_x_user_id}\" \$side { 50% old; * new; }
  map \$side \$other { old new; new old; }
  server {
    listen 127.0.0.1:$2;
    access_log $WORK/logs/$1.log edge buffer=64k flush=1s;
    if (\$blocked) { return 403; }
    location / { $mirror $proxying proxy_pass http://\$side; }
    $mirror_location
  }"
}
nginx_native nginx 18090
nginx_native nginx-mirror 18094 mirror

lua_rules=""
for r in "${RULES[@]}"; do lua_rules+="[[$r]], "; done
NGINX_MAIN="$LUA_MODULES pcre_jit on; $SINGLE" nginx_conf nginx-lua "$upstreams
  lua_shared_dict counters 1m;
  init_by_lua_block { rules = { $lua_rules } }
  server {
    listen 127.0.0.1:18092;
    access_log $WORK/logs/nginx-lua.log edge buffer=64k flush=1s;
    location / {
      set \$side old;
      access_by_lua_block {
        local uri = ngx.var.uri
        for i = 1, #rules do
          if ngx.re.find(uri, rules[i], \"jo\") then return ngx.exit(403) end
        end
        local user = ngx.var.http_x_user_id or ngx.var.remote_addr
        if ngx.crc32_short(user) % 100 < 50 then ngx.var.side = \"new\" end
      }
      log_by_lua_block { ngx.shared.counters:incr(ngx.var.side .. \" \" .. ngx.var.status, 1, 0) }
      $proxying
      proxy_pass http://\$side;
    }
  }"

switchyard_conf() { # name port shadow-percent
  {
    cat <<CONF
listen: "127.0.0.1:$2"
admin: { listen: "127.0.0.1:$(($2 + 1))" }
server: { workers: 1 }
backends:
  old: { url: "http://127.0.0.1:18081" }
  new: { url: "http://127.0.0.1:18082" }
rollout: { percent: 50, sticky: "header:x-user-id" }
shadow: { percent: $3 }
logging: { level: warn, format: json, access_log: true }
modules:
  - rate_limit: { key: "header:x-user-id", rate: 1000000, per: 1s, burst: 1000 }
  - rules:
CONF
    local i=0 r
    for r in "${RULES[@]}"; do
      printf '      - { name: r%d, match: { path_regex: %s } }\n' $i "$(printf '%s' "$r" | sed 's/\\/\\\\/g; s/^/"/; s/$/"/')"
      i=$((i + 1))
    done
  } > "$WORK/$1.yaml"
}
switchyard_conf switchyard 18100 0
switchyard_conf switchyard-shadow 18110 100
"$BIN" check -c "$WORK/switchyard.yaml" >/dev/null || { "$BIN" check -c "$WORK/switchyard.yaml"; exit 1; }

cat > "$WORK/users.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/v1/items/" .. math.random(1, 100000), { ["x-user-id"] = "u" .. math.random(1, 10000) })
end
LUA

# Counted with the configs the CPU runs below check (every peer splits and
# blocks by rule).
if [[ ${INSTRUCTIONS:-0} == 1 ]]; then
  for tool in valgrind callgrind_annotate callgrind_control; do
    command -v $tool >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind: apt-get install -y valgrind"; exit 1; }
  done
  start origin 18081 $LOAD_CPU nginx -c "$WORK/origin.conf" -p "$WORK"
  wait_port 18081
  count_edge() { # name port command...
    local name=$1 port=$2
    shift 2
    count_start "$name" "$port" "$@"
    REQS[$name]=$(taskset -c $LOAD_CPU wrk -t1 -c10 -d"${SECS}s" -s "$WORK/users.lua" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
    count_stop "$name"
    [[ ${REQS[$name]:-0} -gt 0 ]] || { echo "$name: no request done under callgrind; its output: $WORK/logs/$name.cg.out"; exit 1; }
  }
  count_edge nginx 18090 nginx -c "$WORK/nginx.conf" -p "$WORK"
  count_edge nginx-lua 18092 nginx -c "$WORK/nginx-lua.conf" -p "$WORK"
  count_edge switchyard 18100 "$BIN" serve -c "$WORK/switchyard.yaml" --reset-state
  printf '\nthe same edge work per request, instructions under callgrind (wrk, 10 connections, %s s)\n' "$SECS"
  printf '%-12s %10s %16s %10s %14s\n' peer requests "instructions/req" "× nginx" "× nginx-lua"
  for p in nginx nginx-lua switchyard; do
    awk -v p="$p" -v i="${IR[$p]}" -v r="${REQS[$p]}" -v ni="${IR[nginx]}" -v nr="${REQS[nginx]}" -v li="${IR[nginx-lua]}" -v lr="${REQS[nginx-lua]}" \
      'BEGIN { printf "%-12s %10d %16.0f %10.2f %14.2f\n", p, r, i / r, (i / r) / (ni / nr), (i / r) / (li / lr) }'
  done
  exit 0
fi
start origin 18081 $LOAD_CPU nginx -c "$WORK/origin.conf" -p "$WORK"
start nginx 18090 $PROXY_CPU nginx -c "$WORK/nginx.conf" -p "$WORK"
start nginx-lua 18092 $PROXY_CPU nginx -c "$WORK/nginx-lua.conf" -p "$WORK"
start nginx+mirror 18094 $PROXY_CPU nginx -c "$WORK/nginx-mirror.conf" -p "$WORK"
start switchyard 18100 $PROXY_CPU "$BIN" serve -c "$WORK/switchyard.yaml" --reset-state
start switchyard+shadow 18110 $PROXY_CPU "$BIN" serve -c "$WORK/switchyard-shadow.yaml" --reset-state
PEERS=(nginx nginx-lua switchyard nginx+mirror switchyard+shadow)
for p in "${PEERS[@]}"; do wait_port "${PORT[$p]}"; done
# Every peer does its work: it splits, names the side, and blocks by rule.
for p in "${PEERS[@]}"; do
  sides=""
  for u in $(seq 1 40); do
    sides+=$(curl -s -o /dev/null -D - -H "x-user-id: u$u" "http://127.0.0.1:${PORT[$p]}/api/v1/items/1" | tr -d '\r' | awk -F': ' 'tolower($1) ~ /served-by/ {print $2}')" "
  done
  [[ $sides == *old* && $sides == *new* ]] || { echo "$p does not split (sides: $sides)"; exit 1; }
  code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:${PORT[$p]}$BLOCKED")
  [[ $code == 403 ]] || { echo "$p answers $BLOCKED with $code, not 403"; exit 1; }
done

for p in nginx nginx-lua switchyard; do
  url="http://127.0.0.1:${PORT[$p]}/"
  taskset -c $LOAD_CPU wrk -t1 -c50 -d2s -s "$WORK/users.lua" "$url" >/dev/null
  measure "$p" "${PID[$p]}" parse_wrk taskset -c $LOAD_CPU wrk -t1 -c50 -d"${SECS}s" --latency -s "$WORK/users.lua" "$url"
done
# The mirroring peers, and under the same open loop the same two without
# mirrors: the floor a request costs at that rate (below saturation each
# request also pays for waking a sleeping proxy), which the mirror adds to.
declare -A FLOOR=([nginx+mirror]=nginx@open [switchyard+shadow]=switchyard@open) ADDED
for p in nginx+mirror nginx@open switchyard+shadow switchyard@open; do
  proc=${p%@open}
  url="http://127.0.0.1:${PORT[$proc]}/api/v1"
  settle
  taskset -c $LOAD_CPU $TOOLS load --url "$url" --rate "$MIRROR_RATE" --seconds 2 >/dev/null
  settle
  measure "$p" "${PID[$proc]}" parse_load taskset -c $LOAD_CPU $TOOLS load --url "$url" --rate "$MIRROR_RATE" --seconds "$SECS"
done
table "the same edge work per request, 1 worker each" nginx nginx nginx-lua switchyard
table "against NGINX + Lua" nginx-lua nginx-lua switchyard
table "every GET mirrored to the other side, open loop at $MIRROR_RATE req/s" nginx+mirror nginx+mirror switchyard+shadow
table "the same open loop, nothing mirrored (the floor under each mirror)" nginx@open nginx@open switchyard@open
printf '\nwhat mirroring adds per request at %s req/s (mirrored CPU µs/req − the floor)\n' "$MIRROR_RATE"
for p in nginx+mirror switchyard+shadow; do
  ADDED[$p]=$(awk -v a="${CPU_US[$p]}" -v b="${CPU_US[${FLOOR[$p]}]}" 'BEGIN { printf "%.2f", a - b }')
done
for p in nginx+mirror switchyard+shadow; do
  printf '%-22s %8s µs  ×nginx+mirror %s\n' "$p" "${ADDED[$p]}" \
    "$(awk -v a="${ADDED[$p]}" -v b="${ADDED[nginx+mirror]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done

sleep 1.5   # NGINX flushes its buffered access logs every second
echo
printf 'access log lines: '
for f in nginx nginx-lua; do printf '%s %s, ' "$f" "$(wc -l < "$WORK/logs/$f.log")"; done
printf 'switchyard %s\n' "$(grep -c 'switchyard::access' "$WORK/logs/switchyard.out")"
echo "Switchyard counters:"
curl -s http://127.0.0.1:18101/metrics | grep '^switchyard_requests_total' | sed 's/^/  /'
echo "Switchyard+shadow mirrors (all must be completed):"
shadow_metrics=$(curl -s http://127.0.0.1:18111/metrics)
grep -E '^switchyard_(shadow_requests_total|shadow_drops_total|comparisons_total)' <<<"$shadow_metrics" | grep -v ' 0$' | sed 's/^/  /'
# The mirror ratio is fair only if both peers served the load as offered,
# and Switchyard shed no mirror (a shed mirror is work it did not do).
unfair=()
for p in nginx+mirror switchyard+shadow nginx@open switchyard@open; do
  why=$(kept_up "$p" "$MIRROR_RATE") || unfair+=("$why")
done
shed=$(awk '/^switchyard_shadow_drops_total/ {n += $NF} END {print n + 0}' <<<"$shadow_metrics")
[[ $shed == 0 ]] || unfair+=("switchyard+shadow shed $shed mirrors (switchyard_shadow_drops_total), so it did less work than asked")
echo
echo "CPU µs/req: the proxy's own user + system CPU time per request done, from /proc."
echo
if ((${#unfair[@]})); then
  echo "NOT COMPARABLE: the mirror ratios above are no measurement in this run:"
  printf '  - %s\n' "${unfair[@]}"
  echo "Rerun with a lower MIRROR_RATE (this run: $MIRROR_RATE req/s) or on a quieter machine."
  exit 3
fi
echo "The mirror ratios are fair: every peer kept up with $MIRROR_RATE req/s, and no mirror was shed."
