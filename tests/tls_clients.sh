#!/usr/bin/env bash
# Real TLS clients against the TLS listener: curl over HTTP/2 and HTTP/1.1
# (verifying the certificate against its CA, by SNI), and h2load (nghttp2)
# sending 2,000 requests over 10 HTTP/2 connections. Run by .ci/run.
# Usage: tests/tls_clients.sh [switchyard binary]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/switchyard}
for t in curl h2load openssl; do
  command -v $t >/dev/null || { echo "tests/tls_clients.sh needs $t: run bash .ci/run (it installs curl, nghttp2-client, openssl)"; exit 1; }
done
cargo build --quiet --example bench-tools
source bench/lib.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=shop.example -addext "subjectAltName=DNS:shop.example" \
  -keyout "$WORK/shop.key" -out "$WORK/shop.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(port); TLS=$(port); ADMIN=$(port)
target/debug/examples/bench-tools origin --port "$ORIGIN" >/dev/null 2>&1 & pids+=($!)
cat > "$WORK/sy.yaml" <<CONF
listen: ""
admin: { listen: "127.0.0.1:$ADMIN" }
server: { workers: 2 }
tls:
  listen: "127.0.0.1:$TLS"
  certificates: [{ cert_file: "$WORK/shop.pem", key_file: "$WORK/shop.key" }]
backends:
  old: { url: "http://127.0.0.1:$ORIGIN" }
  new: { url: "http://127.0.0.1:$ORIGIN" }
logging: { level: warn }
CONF
"$BIN" check -c "$WORK/sy.yaml" | grep -q "certificate shop.example covers shop.example" || { echo "check does not describe the certificate"; "$BIN" check -c "$WORK/sy.yaml"; exit 1; }
"$BIN" serve -c "$WORK/sy.yaml" >"$WORK/sy.log" 2>&1 & pids+=($!)
wait_port "$ORIGIN"; wait_port "$TLS"

fail() { echo "FAIL: $*"; cat "$WORK/sy.log"; exit 1; }
resolve=(--resolve "shop.example:$TLS:127.0.0.1" --cacert "$WORK/shop.pem")
out=$(curl -sS --http2 "${resolve[@]}" -o /dev/null -w '%{http_version} %{http_code}' "https://shop.example:$TLS/items/1")
[[ $out == "2 200" ]] || fail "curl --http2: $out"
out=$(curl -sS --http1.1 "${resolve[@]}" -o /dev/null -w '%{http_version} %{http_code}' "https://shop.example:$TLS/items/1")
[[ $out == "1.1 200" ]] || fail "curl --http1.1: $out"
echo "curl: HTTP/2 and HTTP/1.1 over TLS, certificate verified by name: ok"

out=$(h2load -n 2000 -c 10 -m 10 "https://127.0.0.1:$TLS/items/1" 2>&1)
grep -q "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored" <<<"$out" || fail "h2load: $out"
grep -q "Application protocol: h2" <<<"$out" || fail "h2load did not negotiate h2: $out"
echo "h2load: 2000 requests over 10 HTTP/2 connections, all succeeded: ok"
