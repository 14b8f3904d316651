#!/usr/bin/env bash
# gRPC unary calls through the binding against calling the gRPC service
# directly, in one run (docs/BENCHMARKS.md, "gRPC through the gateway"):
#
#   (a) direct:  tonic client -> the echo service (h2c);
#   (b) gateway: a Rust tonic client binding its own connections
#                (jose-binding's StampLayer) -> jwt-server --upstream h2c://;
#   (c) sidecar: a plain tonic client -> jwt-client proxy -> the gateway.
#
# The same client (the grpc_echo example's bench: unary Say calls, one after
# another on each of CONCURRENCY connections), taking turns within each
# round; each line is one run: calls/s and the latency a call sees.
#
#   scripts/bench-grpc.sh [ROUNDS] [CALLS] [CONCURRENCY]
#
# Defaults: 3 rounds, 4000 calls, 8 connections. Loopback ports 18500-18502.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
calls=${2:-4000}
concurrency=${3:-8}

echo "building (release)..." >&2
cargo build --release --quiet -p jwt-server -p jwt-client
cargo build --release --quiet -p jose-binding-e2e --example grpc_echo
cleanup() { kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
bin=target/release
$bin/examples/grpc_echo serve 127.0.0.1:18500 2>/dev/null &
RUST_LOG=warn $bin/jwt-server --dev --listen 127.0.0.1:18501 --upstream h2c://127.0.0.1:18500 \
  --replay-capacity 65536 2>/dev/null &
RUST_LOG=warn $bin/jwt-client proxy --server https://localhost:18501 --client-id client1 \
  --key-file fixtures/client1.key --listen 127.0.0.1:18502 2>/dev/null &
sleep 1

echo "round path calls_per_s p50_us p99_us"
for round in $(seq "$rounds"); do
  for path in a_direct b_gateway c_sidecar_gateway; do
    case $path in
      a_direct) url=http://127.0.0.1:18500 ;;
      b_gateway) url=https://localhost:18501 ;;
      c_sidecar_gateway) url=http://127.0.0.1:18502 ;;
    esac
    echo "round $round/$rounds: $path" >&2
    $bin/examples/grpc_echo bench "$url" "$calls" "$concurrency" |
      python3 -c 'import json,sys; r=json.load(sys.stdin); print(sys.argv[1], sys.argv[2], round(r["calls_per_sec"]), r["p50_us"], r["p99_us"])' "$round" "$path"
  done
done
