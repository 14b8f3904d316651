#!/usr/bin/env bash
# The client sidecar's cost (docs/BENCHMARKS.md, "The client sidecar"):
#
#   direct: jwt-client bench -> jwt-server (echo), bound tokens over TLS;
#   chain:  jwt-client bench, plain HTTP/1.1 -> jwt-client proxy -> jwt-server,
#           the sidecar adding the bound tokens.
#
# Same server, same load tool, same connection count, in turns within each
# round, flat out and at a fixed rate. Reported: the app-side latency the
# sidecar adds (p50, p99), and the sidecar's CPU per request beside the load
# tool's own CPU per bound request in the direct run (what a Rust client
# linking the library spends).
#
#   scripts/bench-sidecar.sh [ROUNDS] [RATE] [REQUESTS_PER_CONNECTION]
#
# Defaults: 5 rounds, 3000 requests/s, 5000 requests per connection flat
# out; 16 connections, HTTP/1.1 to the server. Loopback ports 18443, 18080.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
rate=${2:-3000}
requests=${3:-5000}
conns=16
rate_requests=$((rate * 8 / conns))

cargo build --release --quiet -p jwt-server -p jwt-client
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
RUST_LOG=warn target/release/jwt-server --dev --listen 127.0.0.1:18443 --replay-capacity 65536 &
server=$!
RUST_LOG=warn target/release/jwt-client proxy --listen 127.0.0.1:18080 \
  --server https://localhost:18443 --client-id client1 --key-file fixtures/client1.key \
  --connections "$conns" --http 1.1 &
sidecar=$!
sleep 1

run() { # round, side, mode, extra...
  local round=$1 side=$2 mode=$3
  shift 3
  echo "round $round/$rounds: $side $mode" >&2
  target/release/jwt-client bench --server https://localhost:18443 --client-id client1 \
    --key-file fixtures/client1.key --rounds 1 --connections "$conns" --http 1.1 --json "$@" \
    2>/dev/null | python3 scripts/bench-row.py "$round" "$side" "$mode"
}

echo "round side mode req_per_s errors p50_ms p99_ms proxy_or_server_cpu_us loadtool_cpu_us"
for round in $(seq "$rounds"); do
  for mode in ${MODES:-flat rate}; do
    if [ "$mode" = flat ]; then extra=(--requests "$requests"); else extra=(--requests "$rate_requests" --rate "$rate"); fi
    run "$round" direct "$mode" --only bound --server-pid "$server" "${extra[@]}"
    run "$round" chain "$mode" --only sidecar --via-sidecar 127.0.0.1:18080 --server-pid "$sidecar" "${extra[@]}"
  done
done | tee "$dir/runs.txt"

python3 - "$dir/runs.txt" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
def per_round(mode, f):
    out = []
    for d in rows:
        for c in rows:
            if d[0] == c[0] and d[2] == c[2] == mode and d[1] == "direct" and c[1] == "chain":
                out.append(f(d, c))
    return out
for mode in ["flat", "rate"]:
    if not any(r[2] == mode for r in rows):
        continue
    p50 = per_round(mode, lambda d, c: (float(c[5]) - float(d[5])) * 1000)
    p99 = per_round(mode, lambda d, c: (float(c[6]) - float(d[6])) * 1000)
    ratio = per_round(mode, lambda d, c: float(c[7]) / float(d[8]))
    side = per_round(mode, lambda d, c: (float(c[7]), float(d[8])))
    print(f"{mode}: p50 added {statistics.median(p50):.0f} us (rounds {', '.join(f'{x:.0f}' for x in p50)}); "
          f"p99 added {statistics.median(p99):.0f} us; sidecar CPU / load tool's own CPU per bound request "
          f"{statistics.median(ratio):.2f} (rounds {', '.join(f'{a:.1f}/{b:.1f}' for a, b in side)} us)")
EOF
