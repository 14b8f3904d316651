#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
# On Debian/Ubuntu it first installs the system packages the build needs, then
# checks formatting, lints, that the test vectors regenerate byte for byte,
# and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# build-essential: a C compiler for aws-lc-sys (rustls' crypto provider);
# pkg-config + libssl-dev: OpenSSL for josekit, used only by the cross-check tests;
# libtss2-dev: the TPM feature (tss-esapi 7 against tpm2-tss 3.2);
# swtpm + tpm2-tools: the real software TPM the TPM tests start, and the
# tools whose key files the TPM provider must accept;
# nginx: the real upstream the gateway tests start (as this user, on
# loopback ports; the package's own service is not started);
# curl and python3: the clients no one here wrote that the sidecar tests use;
# protobuf-compiler: protoc, for the gRPC service (tonic) the gateway's gRPC
# tests and example run; python3-grpcio: a second gRPC stack (gRPC's C core)
# those tests call it with, through Debian's /usr/bin/python3;
# python3-jwcrypto: a second JOSE implementation, whose tokens and keys
# jose-debug's every_alg tests open.
packages=(build-essential pkg-config libssl-dev libtss2-dev swtpm tpm2-tools nginx haproxy curl python3 protobuf-compiler python3-grpcio python3-jwcrypto)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "error: missing system packages (${missing[*]}) and no apt-get to install them" >&2
    exit 2
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "==> installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  # Keep package scripts from starting services (nginx would take port 80):
  # the tests start what they need themselves.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$policy" ]; then $sudo rm -f "$policy"; fi
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install the Rust toolchain with rustup, then run this again" >&2
  exit 2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# The library's core builds with no IO crate, and each feature builds alone.
echo "==> jose-binding: the core alone, then each feature alone"
for feature in "" keystore-file net gateway proxy-protocol frontend age-file custody tpm test-vectors; do
  cargo clippy --quiet --locked -p jose-binding --no-default-features ${feature:+--features "$feature"} -- -D warnings
done
core_tree=$(cargo tree --locked -p jose-binding --no-default-features -e normal --prefix none)
for crate in tokio hyper rustls toml toml_edit age vsss-rs; do
  if grep -qE "^$crate v" <<<"$core_tree"; then
    echo "error: the core build of jose-binding depends on $crate" >&2
    exit 1
  fi
done

# The client binary holds a root key; it builds no server-side code (age
# it has: it opens the sealed enrolment bundle).
client_tree=$(cargo tree --locked -p jwt-client -e normal --prefix none)
for crate in jwt-server ipnet vsss-rs; do
  if grep -qE "^$crate v" <<<"$client_tree"; then
    echo "error: jwt-client depends on $crate" >&2
    exit 1
  fi
done

echo "==> test vectors regenerate byte for byte"
check_dir="target/vectors-check"
cargo run --quiet --locked -p xtask -- fixtures --vectors-only --dir "$check_dir" 2>/dev/null
if ! cmp -s "$check_dir/vectors.json" fixtures/vectors.json; then
  echo "error: fixtures/vectors.json differs from what 'cargo xtask fixtures --vectors-only' produces" >&2
  diff -u fixtures/vectors.json "$check_dir/vectors.json" | head -40 >&2
  exit 1
fi

# Coverage-guided fuzzing smoke run: each target for a bounded time, starting
# from the seeds in fuzz/seeds. cargo-fuzz needs nightly flags for its
# sanitizers; RUSTC_BOOTSTRAP=1 lets this stable toolchain accept them.
# A crash or a failed build fails the run. FUZZ_SECONDS=0 skips it.
fuzz_seconds="${FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" != "0" ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  fi
  mkdir -p target
  for target in verify keystore keylog proxy_header jose_input; do
    echo "==> fuzz $target for ${fuzz_seconds}s"
    mkdir -p "fuzz/corpus/$target"
    log="target/fuzz-$target.log"
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$fuzz_seconds" -max_len=20000 -print_final_stats=1) >"$log" 2>&1; then
      tail -40 "$log" >&2
      echo "error: fuzz target $target failed (crash or build error); see $log" >&2
      exit 1
    fi
    grep -E "^Done|stat::number_of_executed_units" "$log" || true
  done
fi

# --all-features turns on `tpm`: the TPM tests run against swtpm, never skipped.
echo "==> tests (all features)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
else
  cargo test --workspace --all-features --locked --no-fail-fast
fi

# nextest does not run doctests; the examples in the docs must run too.
echo "==> doctests"
cargo test --doc --workspace --all-features --locked


# The Debian packages as an operator installs them (README "Install"):
# built, installed with dpkg, run, removed and purged. Root and dpkg only
# (CI); elsewhere it says it skips.
echo "==> packages (scripts/test-packages.sh)"
scripts/test-packages.sh
