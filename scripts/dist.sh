#!/usr/bin/env bash
# Builds the Debian packages (jwt-server, jwt-client with the TPM feature,
# jose-debug) into target/debian/, in release mode. Reproducible: the same
# sources give the same package contents (file times come from the last
# commit, SOURCE_DATE_EPOCH).
#
#   scripts/dist.sh            # needs cargo-deb: cargo install --locked cargo-deb
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "error: cargo-deb not found: cargo install --locked cargo-deb" >&2
  exit 2
fi
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH

echo "==> release build (jwt-server, jwt-client with tpm, jose-debug)"
cargo build --release --locked -p jwt-server -p jose-debug
cargo build --release --locked -p jwt-client --features tpm

echo "==> man pages and completions, from each binary's own definition"
dist=target/release/dist
rm -rf "$dist"
mkdir -p "$dist"
for bin in jwt-server jwt-client jose-debug; do
  "target/release/$bin" man | gzip -9n > "$dist/$bin.1.gz"
  "target/release/$bin" completions bash > "$dist/$bin.bash"
  "target/release/$bin" completions zsh > "$dist/_$bin"
  "target/release/$bin" completions fish > "$dist/$bin.fish"
done
touch -d "@$SOURCE_DATE_EPOCH" "$dist"/*

echo "==> packages"
for pkg in jwt-server jwt-client jose-debug; do
  cargo deb --locked --no-build -p "$pkg" -o target/debian/
done
ls -l target/debian/*.deb
