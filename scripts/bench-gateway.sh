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
# out. MODES (default "flat rate h2 h2load-flat h2load-rate") picks the
# kinds of run (see the loop below). WORKERS (default 2) sets both nginx's worker_processes and
# jwt-server's --worker-threads, for the proxy and the upstream alike.
# Needs nginx and h2load (apt-get install nginx nghttp2-client); loopback ports 18090-18092.
# Prints one line per run, then the medians and ratios. With PROFILE=1 each
# jwt-client run is also recorded with perf (needs linux-perf and root),
# and the CPU per request of each peer is printed by component.
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
  local round=$1 peer=$2 mode=$3 port=$4 kind=$5 pids=$6 perf
  shift 6
  echo "round $round/$rounds: $peer $mode" >&2
  if [ -n "${PROFILE:-}" ]; then
    perf record -q -F 4000 -g -p "$pids" -o "$dir/$peer-$mode.data" 2>/dev/null &
    perf=$!
    sleep 0.5
  fi
  target/release/jwt-client bench --server "https://localhost:$port" --client-id client1 \
    --key-file fixtures/client1.key --baseline-token-file "$dir/token" --only "$kind" \
    --path / --method GET --server-pid "$pids" --rounds 1 --connections "$conns" \
    --json "$@" 2>/dev/null | python3 scripts/bench-row.py "$round" "$peer" "$mode"
  if [ -n "${PROFILE:-}" ]; then
    kill -INT "$perf"
    wait "$perf" || true
    echo "profile $peer $mode: CPU per request by component (perf at 4000 Hz)" >>"$dir/profiles.txt"
    perf report -n -i "$dir/$peer-$mode.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
      python3 scripts/profile-buckets.py 250 "$(requests_of "$@")" >>"$dir/profiles.txt"
  fi
}

requests_of() { # the bench arguments: how many requests they make in all
  while [ $# -gt 0 ]; do
    [ "$1" = --requests ] && { echo $(($2 * conns)); return; }
    shift
  done
}

cpu_ticks() { # comma-separated pids: their user + system CPU, in clock ticks
  local total=0 pid f
  for pid in ${1//,/ }; do
    read -r -a f <"/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}

h2run() { # round, peer, mode, port, pids, h2load args...
  local round=$1 peer=$2 mode=$3 port=$4 pids=$5 before
  shift 5
  echo "round $round/$rounds: $peer $mode" >&2
  before=$(cpu_ticks "$pids")
  h2load --h1 -t 1 -c "$conns" -H "authorization: Bearer $token" --log-file "$dir/h2load.log" \
    "$@" "https://localhost:$port/" >"$dir/h2load.out"
  python3 scripts/h2load-row.py "$round" "$peer" "$mode" "$dir/h2load.out" "$dir/h2load.log" \
    $(($(cpu_ticks "$pids") - before))
}

# Modes: flat and rate (jwt-client bench, HTTP/1.1), h2 (jwt-client bench,
# HTTP/2, flat out), h2load-flat and h2load-rate (h2load --h1; static bearer
# only, since h2load cannot make bound tokens).
echo "round peer mode req_per_s errors p50_ms p99_ms server_cpu_us client_cpu_us"
for round in $(seq "$rounds"); do
  for mode in ${MODES:-flat rate h2 h2load-flat h2load-rate}; do
    case $mode in
      flat) extra=(--http 1.1 --requests "$requests") ;;
      rate) extra=(--http 1.1 --requests "$rate_requests" --rate "$rate") ;;
      h2) extra=(--http 2 --requests "$requests") ;;
      h2load-flat)
        h2run "$round" a_nginx "$mode" 18091 "$proxy_workers" -n $((conns * requests))
        h2run "$round" c_gateway_static "$mode" 18092 "$gateway" -n $((conns * requests))
        continue ;;
      h2load-rate)
        h2run "$round" a_nginx "$mode" 18091 "$proxy_workers" -n $((conns * rate_requests)) --rps $((rate / conns))
        h2run "$round" c_gateway_static "$mode" 18092 "$gateway" -n $((conns * rate_requests)) --rps $((rate / conns))
        continue ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    run "$round" a_nginx "$mode" 18091 baseline "$proxy_workers" "${extra[@]}"
    run "$round" b_gateway_bound "$mode" 18092 bound "$gateway" "${extra[@]}"
    run "$round" c_gateway_static "$mode" 18092 baseline "$gateway" "${extra[@]}"
  done
done | tee "$dir/runs.txt"

python3 scripts/bench-summary.py "$dir/runs.txt"
if [ -n "${PROFILE:-}" ]; then
  echo
  cat "$dir/profiles.txt"
fi
