#!/usr/bin/env bash
# Where the cost of binding goes, end to end: perf profiles of the server and
# of the load tool for the bound run and for the static-bearer baseline run
# alone, then, per side and per function, the difference in CPU per request.
#
#   scripts/profile-e2e.sh [FORM] [HTTP] [CONNECTIONS] [REQUESTS]
#   scripts/profile-e2e.sh encrypted-then-signed 2 16 15000
#
# The totals per side move with the machine's state between the two runs
# (this VM has a fast and a ~35% slower state, whatever the load); the sum of
# the functions that appear only in the bound run is the steadier figure.
#
# With PROFILE_UPSTREAM=http://HOST:PORT the server is the gateway in front
# of that upstream (start one first, e.g. nginx answering a static 200), and
# both runs request GET / through it (docs/BENCHMARKS.md, the gateway).
#
# Defaults: signed, 1.1, 16 connections, 10000 requests each. Needs perf and
# root (or kernel.perf_event_paranoid <= 1); loopback only; port from
# PROFILE_PORT (default 18444). Profiles stay in the directory it prints.
set -euo pipefail

form=${1:-signed}
http=${2:-1.1}
conns=${3:-16}
reqs=${4:-10000}
port=${PROFILE_PORT:-18444}
hz=4000
cd "$(dirname "$0")/.."

command -v perf >/dev/null || { echo "profile-e2e: perf not found (apt install linux-perf)" >&2; exit 2; }
cargo build --release -q -p jwt-server -p jwt-client
out=$(mktemp -d /tmp/profile-e2e.XXXXXX)
head -c 24 /dev/urandom | base64 >"$out/baseline.token"

# A larger replay cache than the default, so fast connections stay under its
# per-second bound (docs/BENCHMARKS.md).
gateway=()
route=()
if [ -n "${PROFILE_UPSTREAM:-}" ]; then
  gateway=(--upstream "$PROFILE_UPSTREAM")
  route=(--path / --method GET)
fi
RUST_LOG=warn target/release/jwt-server --dev --listen "127.0.0.1:$port" \
  --baseline-token-file "$out/baseline.token" --replay-capacity 65536 \
  "${gateway[@]}" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

for kind in bound baseline; do
  echo "profiling the $kind run ($conns x $reqs, form $form, HTTP/$http)" >&2
  perf record -q -e cpu-clock -F $hz -p $server -o "$out/server-$kind.data" 2>/dev/null &
  sperf=$!
  sleep 0.5
  perf record -q -e cpu-clock -F $hz -o "$out/client-$kind.data" -- \
    target/release/jwt-client bench --server "https://localhost:$port" \
    --client-id client1 --key-file fixtures/client1.key --ca fixtures/ca.pem \
    --baseline-token-file "$out/baseline.token" --only $kind --form "$form" \
    --http "$http" --connections "$conns" --requests "$reqs" --rounds 1 --json "${route[@]}" \
    >"$out/$kind.json" || {
    echo "profile-e2e: the $kind run had errors; see $out/$kind.json" >&2
    exit 1
  }
  kill -INT $sperf
  wait $sperf || true
done

# Samples per symbol, one line each: "<samples>\t<symbol>".
symbols() {
  perf report -i "$1" --no-children --sort sym --stdio -F sample,sym \
    --percent-limit 0 2>/dev/null |
    awk '!/^#/ && NF >= 2 { n = $1; $1 = ""; sub(/^ +/, ""); print n "\t" $0 }'
}

requests=$((conns * reqs))
for side in server client; do
  symbols "$out/$side-bound.data" >"$out/$side-bound.txt"
  symbols "$out/$side-baseline.data" >"$out/$side-baseline.txt"
  # Per symbol: bound - baseline, bound, baseline, in ns per request.
  awk -F'\t' -v hz=$hz -v n=$requests '
    FNR == NR { base[$2] = $1; next }
    { bound[$2] = $1 }
    END {
      ns = 1e9 / hz / n
      for (s in base) if (!(s in bound)) bound[s] = 0
      for (s in bound) printf "%.1f\t%.1f\t%.1f\t%s\n", (bound[s] - base[s]) * ns, bound[s] * ns, base[s] * ns, s
    }' "$out/$side-baseline.txt" "$out/$side-bound.txt" | sort -t$'\t' -k1,1 -g -r >"$out/$side-diff.txt"
  awk -F'\t' -v side=$side '
    { d += $1; b += $2; a += $3 }
    $3 == 0 { only += $2 }
    NR <= 15 { top[NR] = sprintf("%9.1f %9.1f %9.1f  %s", $1, $2, $3, $4) }
    END {
      printf "\n%s CPU per request: bound %.2f us, baseline %.2f us, difference %+.2f us\n", side, b / 1000, a / 1000, d / 1000
      printf "functions seen only in the bound run: %.2f us per request\n", only / 1000
      printf "%9s %9s %9s  %s\n", "+ns/req", "bound", "baseline", "function (top 15 by difference)"
      for (i = 1; i in top; i++) print top[i]
    }' "$out/$side-diff.txt"
done
echo "profiles: $out" >&2
