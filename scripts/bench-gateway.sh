#!/usr/bin/env bash
# The gateway beside the peer a user would pick, in one run
# (docs/BENCHMARKS.md, "The gateway against nginx"):
#
#   (a) nginx as a TLS 1.3 reverse proxy, static bearer checked with `if`,
#       keep-alive pool to the upstream;
#   (b) jwt-server --upstream with binding (a fresh bound token a request);
#   (c) jwt-server --upstream with the static-bearer baseline.
#
# All three forward to one upstream (nginx on loopback answering a small
# static response), are loaded by the same tool (jwt-client bench, HTTP/1.1,
# 16 keep-alive connections), and take turns within each round. Each round
# runs every peer twice: flat out (throughput, latency) and at a fixed
# request rate (server CPU per request, which then does not depend on how
# the scheduler splits the 2 cores). The upstream's CPU is the same for all
# and is not counted.
#
#   scripts/bench-gateway.sh [ROUNDS] [RATE] [REQUESTS_PER_CONNECTION]
#
# Defaults: 5 rounds, 3000 requests/s, 5000 requests per connection flat
# out. MODES (default "flat rate") picks the kinds of run. WORKERS (default 2) sets both nginx's worker_processes and
# jwt-server's --worker-threads, for the proxy and the upstream alike.
# Needs nginx (apt-get install nginx); loopback ports 18090-18092.
# Prints one line per run, then the medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
rate=${2:-3000}
requests=${3:-5000}
conns=16
workers=${WORKERS:-2}
rate_requests=$((rate * 8 / conns)) # about 8 s at the fixed rate

cargo build --release --quiet -p jwt-server -p jwt-client
dir=$(mktemp -d)
chmod 755 "$dir"
cleanup() {
  for pidfile in "$dir"/*.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" >"$dir/token"
root=$(pwd)

nginx_conf() { # name, server block
  cat >"$dir/$1.conf" <<EOF
worker_processes $workers;
pid $dir/$1.pid;
error_log $dir/$1.error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/$1-body;
  proxy_temp_path $dir/$1-proxy;
  fastcgi_temp_path $dir/$1-fastcgi;
  uwsgi_temp_path $dir/$1-uwsgi;
  scgi_temp_path $dir/$1-scgi;
  keepalive_requests 1000000;
  $2
}
EOF
  nginx -c "$dir/$1.conf" -p "$dir"
}

nginx_conf upstream 'server { listen 127.0.0.1:18090; location / { return 200 "ok\n"; } }'
nginx_conf proxy "
  upstream app { server 127.0.0.1:18090; keepalive 64; }
  server {
    listen 127.0.0.1:18091 ssl http2;
    ssl_certificate $root/fixtures/server.pem;
    ssl_certificate_key $root/fixtures/server.key;
    ssl_protocols TLSv1.3;
    location / {
      if (\$http_authorization != \"Bearer $token\") { return 401; }
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Authorization \"\";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
    }
  }"
RUST_LOG=warn target/release/jwt-server --dev --listen 127.0.0.1:18092 \
  --upstream http://127.0.0.1:18090 --baseline-token-file "$dir/token" \
  --replay-capacity 65536 --worker-threads "$workers" &
gateway=$!
sleep 1
proxy_workers=$(pgrep -d, -P "$(cat "$dir/proxy.pid")")

run() { # round, peer, mode, port, kind, pids, extra...
  local round=$1 peer=$2 mode=$3 port=$4 kind=$5 pids=$6
  shift 6
  echo "round $round/$rounds: $peer $mode" >&2
  target/release/jwt-client bench --server "https://localhost:$port" --client-id client1 \
    --key-file fixtures/client1.key --baseline-token-file "$dir/token" --only "$kind" \
    --path / --method GET --server-pid "$pids" --rounds 1 --connections "$conns" \
    --http 1.1 --json "$@" 2>/dev/null | python3 scripts/bench-row.py "$round" "$peer" "$mode"
}

echo "round peer mode req_per_s errors p50_ms p99_ms server_cpu_us client_cpu_us"
for round in $(seq "$rounds"); do
  for mode in ${MODES:-flat rate}; do
    if [ "$mode" = flat ]; then extra=(--requests "$requests"); else extra=(--requests "$rate_requests" --rate "$rate"); fi
    run "$round" a_nginx "$mode" 18091 baseline "$proxy_workers" "${extra[@]}"
    run "$round" b_gateway_bound "$mode" 18092 bound "$gateway" "${extra[@]}"
    run "$round" c_gateway_static "$mode" 18092 baseline "$gateway" "${extra[@]}"
  done
done | tee "$dir/runs.txt"

python3 - "$dir/runs.txt" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
def med(peer, mode, col):
    v = [float(r[col]) for r in rows if r[1] == peer and r[2] == mode]
    return statistics.median(v) if v else float("nan")
print()
print(f"{'medians':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server us/req @rate':>20}")
for p in ["a_nginx", "b_gateway_bound", "c_gateway_static"]:
    print(f"{p:<18} {med(p,'flat',3):>8.0f} {med(p,'flat',5):>8.3f} {med(p,'flat',6):>8.3f} {med(p,'rate',7):>20.2f}")
def ratio(x, y):
    per = [float(a[3]) / float(b[3]) for a in rows for b in rows
           if a[0] == b[0] and a[2] == b[2] == "flat" and a[1] == x and b[1] == y]
    return statistics.median(per), per
for x, y in [("c_gateway_static", "a_nginx"), ("b_gateway_bound", "a_nginx"), ("b_gateway_bound", "c_gateway_static")]:
    if not any(r[2] == "flat" for r in rows):
        break
    m, per = ratio(x, y)
    print(f"throughput {x} / {y}: {m:.3f} (rounds: {', '.join(f'{p:.3f}' for p in per)})")
added = [float(b[7]) - float(c[7]) for b in rows for c in rows
         if b[0] == c[0] and b[2] == c[2] == "rate" and b[1] == "b_gateway_bound" and c[1] == "c_gateway_static"]
if added:
    print(f"binding's added server CPU at the fixed rate: {statistics.median(added):.2f} us/request (rounds: {', '.join(f'{a:.2f}' for a in added)})")
    print(f"p50 / p99 ms at the fixed rate: " + ", ".join(f"{p} {med(p,'rate',5):.3f} / {med(p,'rate',6):.3f}" for p in ["a_nginx", "b_gateway_bound", "c_gateway_static"]))
EOF
