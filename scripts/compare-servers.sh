#!/usr/bin/env bash
# Two jwt-server builds side by side under the same load, one round against
# each in turn (docs/BENCHMARKS.md, "The serving loop before and after").
#
#   scripts/compare-servers.sh BEFORE_DIR AFTER_DIR [ROUNDS]
#
# BEFORE_DIR and AFTER_DIR hold a release jwt-server each (for instance
# `git worktree add /tmp/before REV && (cd /tmp/before && cargo build
# --release -p jwt-server)`, then /tmp/before/target/release); the load tool
# is this tree's target/release/jwt-client. Loopback only; each round stops
# by itself. Prints one line per run: round, side, run, requests/s, errors,
# server CPU us per request.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: compare-servers.sh BEFORE_DIR AFTER_DIR [ROUNDS]}
after=${2:?usage: compare-servers.sh BEFORE_DIR AFTER_DIR [ROUNDS]}
rounds=${3:-5}
token=$(mktemp)
trap 'rm -f "$token"; kill $(jobs -p) 2>/dev/null || true' EXIT
head -c 24 /dev/urandom | base64 >"$token"
# The fixtures by explicit path, not --dev: a build from before --dev existed
# takes them the same way.
fixture_args=(--cert fixtures/server.pem --key fixtures/server.key --keystore fixtures/keystore.toml)
RUST_LOG=warn "$before/jwt-server" "${fixture_args[@]}" --listen 127.0.0.1:18443 --baseline-token-file "$token" --replay-capacity 65536 &
pid_before=$!
RUST_LOG=warn "$after/jwt-server" "${fixture_args[@]}" --listen 127.0.0.1:18444 --baseline-token-file "$token" --replay-capacity 65536 &
pid_after=$!
sleep 1
for round in $(seq "$rounds"); do
  for side in before after; do
    if [ "$side" = before ]; then port=18443 pid=$pid_before; else port=18444 pid=$pid_after; fi
    echo "round $round/$rounds: $side" >&2
    target/release/jwt-client bench --server "https://localhost:$port" --client-id client1 \
      --key-file fixtures/client1.key --baseline-token-file "$token" --server-pid "$pid" \
      --rounds 1 --connections 16 --requests 10000 --form signed --http 1.1 --json 2>/dev/null |
      python3 -c '
import json, sys
v = json.load(sys.stdin)
for r in v["median_runs"]:
    print(sys.argv[1], sys.argv[2], r["run"], round(r["requests_per_s"]), r["errors"], r["server_cpu_us_per_request"])
' "$round" "$side"
  done
done
