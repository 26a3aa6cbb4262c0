# Shared by the bench scripts (sourced): a scratch directory, the processes
# started (killed on exit), and a wait for a port to accept.
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# wait_port PORT [TENTHS=100]: waits up to TENTHS tenths of a second.
wait_port() { for _ in $(seq 1 "${2:-100}"); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }

# An NGINX config "$WORK/$1.conf": one worker (NGINX_WORKERS=N for more) in
# the foreground, no access log, then $2 inside its http block.
nginx_conf() {
  cat > "$WORK/$1.conf" <<CONF
${NGINX_MAIN:-}
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/logs/$1.err warn;
events { worker_connections 19000; }
http {
  access_log off;
  keepalive_requests 1000000;
  $2
}
CONF
}

# An NGINX origin on each port given: "$WORK/origin.conf". Every path
# answers one small JSON body, but /files/64k and /files/1m (bodies of that
# size) and POST /upload (reads a body of up to 2 MB, answers a small one).
# The NGINX comparisons (proxy.sh, tls.sh, edge.sh) share it.
nginx_origin() {
  local body='{"id":42,"name":"kettle","price":12.5,"tags":["home","kitchen"],"stock":{"count":17,"warehouse":"AMS"}}'
  local listens="" p
  for p in "$@"; do listens+="listen 127.0.0.1:$p; "; done
  chmod 755 "$WORK"   # nginx workers run as nobody
  mkdir -p "$WORK/www/files" "$WORK/logs"
  printf "%s" "$body" > "$WORK/www/item.json"
  head -c 65536 /dev/zero | tr '\0' a > "$WORK/www/files/64k"
  head -c 1048576 /dev/zero | tr '\0' a > "$WORK/www/files/1m"
  chmod -R a+rX "$WORK/www"
  nginx_conf origin "default_type application/json;
  server { $listens root $WORK/www;
    location / { try_files /item.json =404; }
    location /files/ { }
    location = /upload { client_max_body_size 2m; client_body_buffer_size 2m; return 200 '{\"ok\":true}'; } }"
}

# An NGINX reverse proxy (1 worker, upstream keep-alive) in front of the
# origin on 18081: "$WORK/proxy.conf". $1 is the server block's own
# directives (listen, TLS). With HEADERS=same it writes the headers
# Switchyard writes (bench/same-headers.sh).
nginx_proxy() {
  source bench/same-headers.sh
  nginx_conf proxy "upstream origin { server 127.0.0.1:18081; keepalive 256; }
  $SAME_HEADERS_HTTP
  server {
    $1
    client_max_body_size 2m;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_request_buffering off;
      $SAME_HEADERS_LOCATION $SAME_HEADERS_SIDE }
  }"
}

# --- CPU per request ---------------------------------------------------------
# A proxy's CPU is its own user + system time from /proc (all its threads,
# and its children: NGINX's workers), read before and after a load run.
HZ=$(getconf CLK_TCK)
cpu_ticks() { # pid → "user system" in clock ticks
  local user=0 sys=0 p u s
  for p in "$1" $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat")
    user=$((user + u)); sys=$((sys + s))
  done
  echo "$user $sys"
}

# Each load tool's output → "requests req/s p99-ms failures" (p99 "-" when
# the tool gives none).
parse_wrk() {
  awk '/ requests in / {n=$1} /Requests\/sec/ {r=$2} /Non-2xx/ {f+=$NF} /Socket errors/ {f+=0}
       $1=="99%" { v=$2; if (v ~ /us$/) { sub(/us/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms/,"",v) } else { sub(/s/,"",v); v*=1000 } p=v }
       END { printf "%d %s %s %d\n", n, r, (p=="" ? "-" : p), f }'
}
parse_h2load() {
  awk '/^requests:/ {n=$8; f=$10+$12+$14} /^finished in/ {r=$4} /^status codes:/ {sub(/,/,"",$3)}
       END { printf "%d %s - %d\n", n, r, f }'
}
parse_oha() { # oha --output-format json
  python3 -c 'import json,sys
d=json.load(sys.stdin); s=d["summary"]; codes=d.get("statusCodeDistribution",{})
ok=sum(v for k,v in codes.items() if k.startswith("2")); bad=sum(v for k,v in codes.items() if not k.startswith("2"))
bad+=sum(d.get("errorDistribution",{}).values())
print(ok+bad, s["requestsPerSec"], d["latencyPercentiles"]["p99"]*1000, bad)'
}

parse_load() { # bench-tools load: "sent N non_2xx N failed N p50_ms X p99_ms Y elapsed_s Z"
  awk '/^sent/ {print $2, ($12 > 0 ? $2 / $12 : "-"), $10, $4 + $6}'
}

# settle: waits (up to 75 s) until the kernel holds fewer than 1,000 TCP
# connections in TIME_WAIT. A peer that opens a connection per request
# (NGINX's `mirror` does, to its origin) leaves tens of thousands behind
# for 60 s; the next run's connects then search a crowded port range, and
# that kernel time would be charged to whichever peer runs next.
settle() {
  local start=$SECONDS n
  while n=$(ss -Htan state time-wait | wc -l); ((n >= 1000)); do
    ((SECONDS - start < 75)) || { echo "still $n connections in TIME_WAIT after 75 s"; return 1; }
    sleep 1
  done
  ((SECONDS - start < 2)) || echo "(waited $((SECONDS - start)) s for TIME_WAIT connections to expire)"
}

# kept_up NAME RATE: whether NAME, measured under an open-loop load of RATE
# req/s, served it as offered: answers at 95 % of the rate or more (a
# server that falls behind works off a backlog after the schedule ends)
# and p99 under MAX_P99_MS (default 500). A peer that fell behind spent
# CPU on the overload itself (more connections, longer queues), so its CPU
# per request is no fair base. Prints why not, and fails, when it did not.
kept_up() {
  local name=$1 rate=$2 max=${MAX_P99_MS:-500}
  awk -v n="$name" -v r="${RPS[$name]}" -v o="$rate" -v p="${P99[$name]}" -v max="$max" 'BEGIN {
    if (r < 0.95 * o || p > max) {
      printf "%s fell behind the offered %d req/s: answered %.0f req/s, p99 %.1f ms (over %d ms is behind)\n", n, o, r, p, max; exit 1 } }'
}

# start NAME PORT CPUS COMMAND...: a peer started pinned to CPUS, its output
# in $WORK/logs/NAME.out; PID[NAME] and PORT[NAME] remember it.
declare -A PID PORT
start() {
  local name=$1 port=$2 cpus=$3; shift 3
  taskset -c "$cpus" "$@" > "$WORK/logs/$name.out" 2>&1 & pids+=($!)
  PID[$name]=$!; PORT[$name]=$port
}

declare -A REQS RPS P99 USER_US SYS_US CPU_US FAILS
# measure NAME PID PARSER COMMAND...: runs the load command, then records
# requests, req/s, p99 and the proxy PID's CPU µs per request under NAME.
measure() {
  local name=$1 pid=$2 parser=$3 u0 s0 u1 s1 out n r p f
  shift 3
  [[ ${SYSCALLS:-0} == 1 ]] && syscalls_start "$pid"
  [[ -n ${PROFILE:-} ]] && profile_start "$pid"
  read -r u0 s0 < <(cpu_ticks "$pid")
  out=$("$@" 2>&1) || { echo "$name: the load failed:"; echo "$out"; exit 1; }
  read -r u1 s1 < <(cpu_ticks "$pid")
  [[ -n ${PROFILE:-} ]] && profile_stop "$name"
  [[ ${SYSCALLS:-0} == 1 ]] && syscalls_stop
  read -r n r p f < <($parser <<<"$out")
  [[ $n -gt 0 ]] || { echo "$name: no requests done:"; echo "$out"; exit 1; }
  [[ $r == - ]] && r=$(awk -v n="$n" -v s="$SECS" 'BEGIN { print n / s }')
  REQS[$name]=$n; RPS[$name]=$r; P99[$name]=$p; FAILS[$name]=$f
  USER_US[$name]=$(awk -v t=$((u1 - u0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  SYS_US[$name]=$(awk -v t=$((s1 - s0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  CPU_US[$name]=$(awk -v a="${USER_US[$name]}" -v b="${SYS_US[$name]}" 'BEGIN { printf "%.2f", a + b }')
  if [[ $f -gt 0 ]]; then echo "$name: $f of $n requests failed or were not 2xx"; fi
  [[ ${SYSCALLS:-0} == 1 ]] && syscalls_report "$name" "$n"
  return 0
}

# --- Instructions under callgrind ----------------------------------------------
# count_start NAME PORT COMMAND...: COMMAND under callgrind (with CG_OPTS,
# more of callgrind's options, if set), counting only from when PORT
# answers (start-up is no request's cost); count_stop NAME ends it and sets
# IR[NAME] to the instructions counted, in every thread. Its files, one or
# one per thread (--separate-threads), are "$WORK/NAME.cg"*; KEEP=DIR keeps
# a copy.
declare -A IR CG_PID
CG_OPTS=()
count_start() {
  local name=$1 port=$2 tries=0
  shift 2
  mkdir -p "$WORK/logs"
  valgrind --tool=callgrind "${CG_OPTS[@]}" --instr-atstart=no --callgrind-out-file="$WORK/$name.cg" "$@" >"$WORK/logs/$name.cg.out" 2>&1 &
  pids+=($!); CG_PID[$name]=$!
  wait_port "$port" 600
  until [[ $(callgrind_control -i on "${CG_PID[$name]}" 2>/dev/null) == *OK.* ]]; do
    tries=$((tries + 1)); ((tries < 20)) || { echo "callgrind_control cannot reach $name (pid ${CG_PID[$name]})"; exit 1; }
    sleep 0.5
  done
}
count_stop() {
  local name=$1 pid=${CG_PID[$1]} f ir total=0
  kill -INT "$pid" 2>/dev/null || true; kill -QUIT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for f in "$WORK/$name.cg" "$WORK/$name.cg"-*; do
    [[ -f $f ]] || continue
    # With one file per thread, the plain name holds no counts.
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') || continue
    [[ -n $ir ]] || continue
    total=$((total + ir))
    [[ -z ${KEEP:-} ]] || cp "$f" "$KEEP/"
  done
  ((total > 0)) || { echo "$name: callgrind wrote no counts; its output:"; cat "$WORK/logs/$name.cg.out"; exit 1; }
  IR[$name]=$total
}

# --- perf over the load run ----------------------------------------------------
# perf_start KIND PID PERF-ARGS...: perf (stat or record) on every thread
# of PID and of its worker processes, attached with its events off and
# switched on once attached (perf acknowledges on its control fifo), so it
# covers the load run and nothing before it. perf_stop KIND ends it.
declare -A PERF_JOB PERF_CTL PERF_ACK
perf_start() {
  local kind=$1 pid=$2 pids ack ctl_fd ack_fd
  shift 2
  command -v perf >/dev/null || { echo "perf is needed here: apt-get install -y linux-perf"; exit 1; }
  pids=$(echo "$pid" $(pgrep -P "$pid" || true) | tr ' ' ,)
  rm -f "$WORK/$kind.ctl" "$WORK/$kind.ack"; mkfifo "$WORK/$kind.ctl" "$WORK/$kind.ack"
  perf "$@" -D -1 --control "fifo:$WORK/$kind.ctl,$WORK/$kind.ack" -p "$pids" 2>"$WORK/$kind.err" >/dev/null &
  PERF_JOB[$kind]=$!
  # Opened read-write, which does not wait for the other end: a perf that
  # fails before opening its fifos (no permission for the tracepoints, a
  # process gone) then ends in the error below instead of a hang.
  exec {ctl_fd}<>"$WORK/$kind.ctl" {ack_fd}<>"$WORK/$kind.ack"
  PERF_CTL[$kind]=$ctl_fd; PERF_ACK[$kind]=$ack_fd
  echo enable >&"$ctl_fd"
  read -r -t 30 ack <&"$ack_fd" || { echo "perf $1 never attached to $pid:"; cat "$WORK/$kind.err"; exit 1; }
}
perf_stop() { # KIND
  local ctl_fd=${PERF_CTL[$1]} ack_fd=${PERF_ACK[$1]}
  exec {ctl_fd}>&- {ack_fd}<&-
  kill -INT "${PERF_JOB[$1]}"; wait "${PERF_JOB[$1]}" 2>/dev/null || true
}

# --- System calls per request (SYSCALLS=1) -----------------------------------
# Kernel time is most of a small request's CPU for every proxy here, so
# the calls made per request say where it can still be cut. Counted by the
# kernel's syscall tracepoints (perf stat). The count itself costs some
# CPU: read ratios from a run without it.
syscalls_start() { perf_start syscalls "$1" stat -x, -o "$WORK/syscalls.csv" -e 'syscalls:sys_enter_*'; }
syscalls_stop() { perf_stop syscalls; }
# syscalls_report NAME REQUESTS: every call made at least 0.05 times a request.
syscalls_report() {
  awk -F, -v n="$2" -v name="$1" '$3 ~ /sys_enter_/ && $1 ~ /^[0-9]+$/ {
      c=$1/n; sub(/syscalls:sys_enter_/, "", $3); t+=c; if (c >= 0.05) s=s sprintf(" %s %.2f", $3, c) }
    END { printf "%s: %.2f system calls per request:%s\n", name, t, s }' "$WORK/syscalls.csv"
}

# --- Where the CPU goes (PROFILE=DIR) ----------------------------------------
# Kernel and user time by function for each peer, over the same load run:
# perf samples the proxy's threads and worker processes on the cpu-clock
# (this machine has no hardware counters) and keeps, per peer, DIR/NAME.txt
# (functions by share of samples, kernel ones marked [k]) and DIR/NAME.data
# for `perf report -i`. Sampling costs some CPU: read ratios from a run
# without it.
profile_start() {
  mkdir -p "$PROFILE"
  perf_start profile "$1" record -e cpu-clock -F 2999 -o "$WORK/profile.data"
}
profile_stop() { # NAME
  perf_stop profile
  mv "$WORK/profile.data" "$PROFILE/$1.data"
  # awk reads to the end: `head` would end perf with SIGPIPE under pipefail.
  perf report -i "$PROFILE/$1.data" --no-children --sort sym --stdio 2>/dev/null \
    | awk '!/^#/ && NF && n++ < 60' > "$PROFILE/$1.txt"
  echo "$1: profile in $PROFILE/$1.txt"
}

# table TITLE BASE NAME...: one row per measured NAME, ratios to BASE's.
table() {
  local title=$1 base=$2 t; shift 2
  [[ ${HEADERS:-bare} == same ]] && title+=" (HEADERS=same: NGINX writes Switchyard's headers too)"
  printf '\n%s\n%-22s %10s %9s %12s %11s %10s %11s %11s\n' "$title" peer "req/s" "p99 ms" "CPU µs/req" "CPU ×$base" "p99 ×$base" "user µs/req" "sys µs/req"
  for t in "$@"; do
    printf '%-22s %10.0f %9s %12.2f %11s %10s %11.2f %11.2f\n' "$t" "${RPS[$t]}" "$(awk -v p="${P99[$t]}" 'BEGIN { if (p == "-") print p; else printf "%.2f", p }')" "${CPU_US[$t]}" \
      "$(awk -v a="${CPU_US[$t]}" -v b="${CPU_US[$base]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" \
      "$(awk -v a="${P99[$t]}" -v b="${P99[$base]:--}" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }')" \
      "${USER_US[$t]}" "${SYS_US[$t]}"
  done
}
