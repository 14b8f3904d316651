#!/usr/bin/env bash
# The same bound load with and without a TLS-terminating HAProxy in front,
# in one run (docs/BENCHMARKS.md, "Behind a TLS-terminating HAProxy"):
#
#   (a) jwt-server terminating TLS itself (the echo app, POST /v1/claims);
#   (b) HAProxy terminating TLS 1.3 and handing on the exporter secret, in
#       front of jwt-server --frontend haproxy (HTTP/1.1 backend, reused);
#
# loaded by the same tool (jwt-client bench, HTTP/1.1, 16 keep-alive
# connections, fresh bound tokens), taking turns within each round: flat
# out (throughput) and at a fixed rate (CPU per request: jwt-server's
# alone, and with HAProxy's).
#
#   scripts/bench-frontend.sh [ROUNDS] [RATE] [REQUESTS_PER_CONNECTION]
#
# Defaults: 3 rounds, 2000 requests/s, 3000 requests per connection flat
# out. Needs haproxy (apt-get install haproxy); loopback ports 18443-18445.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-2000}
requests=${3:-3000}
conns=16
rate_requests=$((rate * 6 / conns)) # about 6 s at the fixed rate

cargo build --release --quiet -p jwt-server -p jwt-client
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
root=$(pwd)
cat fixtures/server.pem fixtures/server.key >"$dir/server.crt.pem"

RUST_LOG=warn target/release/jwt-server --dev --listen 127.0.0.1:18443 --replay-capacity 65536 &
direct=$!
RUST_LOG=warn target/release/jwt-server --frontend haproxy --listen 127.0.0.1:18445 \
  --keystore "$root/fixtures/keystore.toml" --replay-capacity 65536 &
behind=$!
cat >"$dir/haproxy.cfg" <<CFG
global
  tune.ssl.keylog on
  tune.bufsize 131072
  nbthread 2
defaults
  mode http
  option forwardfor
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend tls
  bind 127.0.0.1:18444 ssl crt $dir/server.crt.pem ssl-min-ver TLSv1.3 alpn h2,http/1.1
  http-request set-header x-jose-binding-exporter-secret %[ssl_fc_exporter_secret]
  http-request set-header x-jose-binding-tls-cipher %[ssl_fc_cipher]
  http-request del-header x-jose-binding-ekm
  default_backend server
backend server
  http-reuse always
  server s1 127.0.0.1:18445
CFG
haproxy -db -f "$dir/haproxy.cfg" >/dev/null 2>&1 &
haproxy=$!
sleep 1

run() { # round, peer, mode, port, pids, extra...
  local round=$1 peer=$2 mode=$3 port=$4 pids=$5
  shift 5
  echo "round $round/$rounds: $peer $mode" >&2
  target/release/jwt-client bench --server "https://localhost:$port" --client-id client1 \
    --key-file fixtures/client1.key --only bound --server-pid "$pids" --rounds 1 \
    --connections "$conns" --http 1.1 --json "$@" 2>/dev/null |
    python3 scripts/bench-row.py "$round" "$peer" "$mode"
}

echo "round peer mode req_per_s errors p50_ms p99_ms server_cpu_us client_cpu_us"
for round in $(seq "$rounds"); do
  for mode in flat rate; do
    if [ "$mode" = flat ]; then extra=(--requests "$requests"); else extra=(--requests "$rate_requests" --rate "$rate"); fi
    run "$round" a_direct "$mode" 18443 "$direct" "${extra[@]}"
    run "$round" b_haproxy_jwt "$mode" 18444 "$behind" "${extra[@]}"
    [ "$mode" = rate ] && run "$round" b_haproxy_both "$mode" 18444 "$behind,$haproxy" "${extra[@]}"
  done
done | tee "$dir/runs.txt"

python3 - "$dir/runs.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
def med(peer, mode, col):
    v = [float(r[col]) for r in rows if r[1] == peer and r[2] == mode]
    return statistics.median(v) if v else float("nan")
print()
print(f"{'medians':<16} {'req/s':>8} {'errors':>7} {'server us/req @rate':>20}")
for p in ["a_direct", "b_haproxy_jwt", "b_haproxy_both"]:
    print(f"{p:<16} {med(p,'flat',3):>8.0f} {med(p,'flat',4):>7.0f} {med(p,'rate',7):>20.2f}")
per = [float(b[3]) / float(a[3]) for a in rows for b in rows
       if a[0] == b[0] and a[2] == b[2] == "flat" and a[1] == "a_direct" and b[1] == "b_haproxy_jwt"]
if per:
    print(f"throughput behind HAProxy / direct: {statistics.median(per):.3f} (rounds: {', '.join(f'{p:.3f}' for p in per)})")
PY
