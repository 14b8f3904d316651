#!/usr/bin/env bash
# The packages as an operator uses them (README "Install"), on this machine:
# build them (scripts/dist.sh), install them with dpkg, then without a
# running systemd do what the unit would: `jwt-server init`, the installed
# server as the package's user with the packaged config, a client enrolled
# with the installed jwt-client (invite -> enroll -> send), a token decoded
# with the installed jose-debug; check man pages, completions, the
# conffile, users, owners and modes, the units (systemd-analyze); remove and
# purge. Needs root and dpkg (CI: Debian 12 as root); scripts/test.sh runs
# it there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ] || ! command -v dpkg >/dev/null; then
  echo "skip: the package test needs root and dpkg" >&2
  exit 0
fi
fail() { echo "error: $*" >&2; exit 1; }
if ! command -v cargo-deb >/dev/null; then
  echo "==> installing cargo-deb"
  cargo install --locked --quiet cargo-deb
fi
scripts/dist.sh

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  dpkg --purge jwt-server jwt-client jose-debug >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
dpkg --purge jwt-server jwt-client jose-debug >/dev/null 2>&1 || true

echo "==> dpkg -i"
dpkg -i target/debian/jwt-server_*.deb target/debian/jwt-client_*.deb target/debian/jose-debug_*.deb

echo "==> users, directories, conffile, modes"
getent passwd jwt-server >/dev/null || fail "no jwt-server user"
getent passwd jwt-client >/dev/null || fail "no jwt-client user"
[[ " $(id -nG jwt-client) " == *" tss "* ]] || fail "jwt-client is not in the tss group"
[ "$(stat -c '%a %U' /var/lib/jwt-server)" = "700 jwt-server" ] || fail "/var/lib/jwt-server: $(stat -c '%a %U' /var/lib/jwt-server)"
[ "$(stat -c '%a %U:%G' /etc/jwt-server/server.toml)" = "640 root:jwt-server" ] || fail "server.toml: $(stat -c '%a %U:%G' /etc/jwt-server/server.toml)"
[[ "$(dpkg-query -W -f='${Conffiles}\n' jwt-server)" == *" /etc/jwt-server/server.toml "* ]] || fail "server.toml is not a conffile"
grep -q fixtures /etc/jwt-server/server.toml && fail "the packaged config names the repository's fixtures"

echo "==> man pages and completions"
for bin in jwt-server jwt-client jose-debug; do
  MANPAGER=cat MANWIDTH=80 man "$bin" > "$work/man.txt" || fail "man $bin"
  grep -q "$bin" "$work/man.txt" || fail "man $bin names no $bin"
  bash -c "source /usr/share/bash-completion/completions/$bin && complete -p $bin" >/dev/null || fail "bash completion of $bin"
  [ -s "/usr/share/zsh/vendor-completions/_$bin" ] || fail "zsh completion of $bin"
  [ -s "/usr/share/fish/vendor_completions.d/$bin.fish" ] || fail "fish completion of $bin"
done

echo "==> the units (systemd-analyze)"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /lib/systemd/system/jwt-server.service
  systemd-analyze verify /lib/systemd/system/jwt-client-proxy@.service
  systemd-analyze security --offline=true /lib/systemd/system/jwt-server.service | tail -1 | tee "$work/security"
  grep -Eq "(SAFE|OK) " "$work/security" || fail "jwt-server.service is not OK or better: $(cat "$work/security")"
fi

echo "==> a server without a certificate says what to do"
if runuser -u jwt-server -- jwt-server --config /etc/jwt-server/server.toml > "$work/nocert.log" 2>&1; then
  fail "the server started without a certificate"
fi
grep -q "jwt-server init" "$work/nocert.log" || fail "no hint at jwt-server init: $(cat "$work/nocert.log")"

echo "==> jwt-server init, then the server as its user"
jwt-server init --san localhost | tee "$work/init.out"
[ "$(stat -c '%U %a' /var/lib/jwt-server/server.key)" = "jwt-server 600" ] || fail "server.key: $(stat -c '%U %a' /var/lib/jwt-server/server.key)"
jwt-server init --san localhost > "$work/init2.out" 2>&1
grep -q "nothing to do" "$work/init2.out" || fail "a second init changed something: $(cat "$work/init2.out")"
pin=$(sed -n 's/.*full sha256 \([0-9a-f]*\).*/\1/p' "$work/init.out")
runuser -u jwt-server -- jwt-server --config /etc/jwt-server/server.toml --listen 127.0.0.1:18643 --status-listen 127.0.0.1:19690 > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do grep -q "jwt-server ready" "$work/server.log" && break; sleep 0.2; done
grep -q "jwt-server ready" "$work/server.log" || fail "the server did not start: $(cat "$work/server.log")"

echo "==> jwt-server keys invite -> jwt-client enroll -> send"
jwt-server keys invite client7 --advertise https://localhost:18643 --out "$work/invite"
[ "$(stat -c '%U' /var/lib/jwt-server/keystore.toml)" = "jwt-server" ] || fail "keys invite gave the keystore to $(stat -c '%U' /var/lib/jwt-server/keystore.toml)"
for _ in $(seq 50); do grep -q "keystore reloaded" "$work/server.log" && break; sleep 0.2; done
jwt-client enroll - --config-dir "$work/client" < "$work/invite" 2> "$work/enroll.out"
grep -q "${pin:0:16}" "$work/enroll.out" || fail "the client pinned another CA than init's: $(cat "$work/enroll.out")"
jwt-client send --config-dir "$work/client" --claims '{"role":"ops"}' | tee "$work/send.out"
grep -q '"client_id":"client7"' "$work/send.out" || fail "send"

echo "==> jose-debug decodes a token"
token=$(sed -n 's/.*"token": "\(.*\)".*/\1/p' fixtures/vectors.json | sed -n 2p)
jose-debug decode --root-key REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk \
  --ekm d5efe7d2d7de310d9144daceaef444b30217c22a89372afb316692531caa8563 \
  --now 2026-01-01T00:00:10Z "$token" > "$work/decode.out" || fail "jose-debug decode: $(cat "$work/decode.out")"

kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""

echo "==> dpkg -r keeps the conffile and the keystore; --purge removes them"
dpkg -r jwt-server jwt-client jose-debug
[ -f /etc/jwt-server/server.toml ] || fail "dpkg -r removed the conffile"
[ -f /var/lib/jwt-server/keystore.toml ] || fail "dpkg -r removed the keystore"
[ ! -e /usr/bin/jwt-server ] || fail "dpkg -r left the binary"
dpkg --purge jwt-server jwt-client jose-debug
[ ! -e /etc/jwt-server ] || fail "purge left /etc/jwt-server"
[ ! -e /var/lib/jwt-server ] || fail "purge left /var/lib/jwt-server"
getent passwd jwt-server >/dev/null && fail "purge left the jwt-server user"
echo "==> packages: all checks passed"
