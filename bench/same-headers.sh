# HEADERS=same: NGINX writes the headers Switchyard writes by default on a
# proxied request and its answer, so both do the same header work. A bare
# `proxy_pass` (the default, HEADERS=bare) adds none of them. Switchyard,
# for a client that is not a trusted proxy, writes X-Forwarded-For (the
# peer's address, replacing the client's), X-Forwarded-Proto and
# X-Forwarded-Host (the Host as sent), X-Request-ID (the client's, or a
# fresh random one) to the backend and back to the client, Via appended
# both ways, and x-switchyard-served-by on the answer. Sourced by the bench
# scripts, which put SAME_HEADERS_HTTP in NGINX's http block and
# SAME_HEADERS_LOCATION (and, where the script names no side itself,
# SAME_HEADERS_SIDE) in its proxying location.
case ${HEADERS:-bare} in
  bare) SAME_HEADERS_HTTP="" SAME_HEADERS_LOCATION="" SAME_HEADERS_SIDE="" ;;
  same)
    SAME_HEADERS_HTTP='map $http_x_request_id $sy_request_id { "" $request_id; default $http_x_request_id; }
  map $http_via $sy_via { "" "1.1 nginx"; default "$http_via, 1.1 nginx"; }'
    SAME_HEADERS_LOCATION='proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host; proxy_set_header X-Request-ID $sy_request_id; proxy_set_header Via $sy_via;
      add_header X-Request-ID $sy_request_id always; add_header Via "1.1 nginx" always;'
    SAME_HEADERS_SIDE='add_header X-Switchyard-Served-By old always;' ;;
  *) echo "HEADERS is bare (NGINX's proxy_pass as it comes) or same (NGINX writes Switchyard's headers), not $HEADERS"; exit 1 ;;
esac
