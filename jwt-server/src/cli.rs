//! The command line: every flag, its env var and its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use jose_binding::Form;

/// Serves POST /v1/claims behind TLS-bound JOSE verification, or with
/// --upstream protects any HTTP service as a gateway.
///
/// Every TLS 1.3 connection exports its keying material (EKM); a client's
/// token verifies only with keys derived from that EKM and the client's root
/// key, so a token stolen from one connection is refused on any other.
///
/// It needs a certificate chain and its key (--cert, --key) and a keystore
/// (--keystore); there is no default for them. To try it out from the
/// repository root, --dev serves on 127.0.0.1:8443 with the test fixtures
/// (fixtures/server.pem, fixtures/server.key, fixtures/keystore.toml),
/// whose private keys are published: never use --dev in production.
///
/// Settings come from flags, then environment variables, then the --config
/// TOML file (same names with underscores: listen, cert, key, keystore,
/// audience, forms, skew_secs, max_ttl_secs, replay_capacity,
/// worker_threads, baseline_token_file, and the
/// limits: max_connections, max_handshakes, max_pending_per_source,
/// eviction_min_age_ms, handshake_timeout_secs, auth_timeout_secs,
/// header_read_timeout_secs, idle_timeout_secs, max_streams,
/// max_send_buf_bytes, refusal_log_per_sec; the gateway's: upstream,
/// upstream_ca, upstream_host, public_paths, public_websocket_paths,
/// forward_token, client_id_header, form_header, claims_header, trusted_proxies,
/// upstream_connect_timeout_secs, upstream_response_timeout_secs,
/// upstream_idle_timeout_secs, status_listen), then the defaults shown.
/// Relative paths in the --config file are relative to its directory. The
/// keys commands read the keystore the same way (--keystore, JWT_KEYSTORE,
/// the --config file's keystore, --dev).
///
/// The certificate and key, like the keystore, are reloaded on SIGHUP and
/// when their files change; a pair that does not load keeps the one in force.
#[derive(Parser, Debug)]
#[command(name = "jwt-server", version, about, long_about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

pub(crate) const EXAMPLES: &str = "Examples:
  jwt-server --dev                             # the published test fixtures, 127.0.0.1:8443
  jwt-server --listen 0.0.0.0:443 --cert chain.pem --key key.pem --keystore /etc/jwt/keystore.toml
  jwt-server --config /etc/jwt/server.toml --upstream http://127.0.0.1:3000 --public-path /health
  jwt-server keys add client7 --keystore /etc/jwt/keystore.toml --key-out client7.key
  jwt-server keys rotate client7 --config /etc/jwt/server.toml --key-out client7.key
  jwt-server keys split client7 --threshold 2 --holder alice=age1... --holder bob=age1... --holder carol=age1...
  jwt-server keys combine client7 client7-alice.share client7-carol.share --identity alice.key --identity carol.key
  kill -HUP $(pidof jwt-server)                # reload the keystore, certificate and key now

Logs go to stderr; RUST_LOG=debug adds key fingerprints (never keys).";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve (the default when no command is given).
    Serve,
    /// Manage the keystore: add, rotate or remove a client's root keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Create a client with a fresh 32-byte root key; writes its key file
    /// once (--key-out FILE, or --stdout), before the keystore changes.
    Add {
        #[command(flatten)]
        target: KeyTarget,
        #[command(flatten)]
        out: KeyOut,
    },
    /// Put a fresh root key first for a client; the previous current key
    /// stays accepted. The new key is written (--key-out FILE, or --stdout)
    /// before the keystore changes.
    Rotate {
        #[command(flatten)]
        target: KeyTarget,
        #[command(flatten)]
        out: KeyOut,
        /// How many previous keys to keep accepting.
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
    /// Remove a client, or with --previous only its non-current keys (ends a rotation).
    Remove {
        #[command(flatten)]
        target: KeyTarget,
        #[arg(long)]
        previous: bool,
    },
    /// Split a client's current root key into one share per holder, each
    /// encrypted to the holder's age public key; any --threshold of them
    /// rebuild it (Shamir over GF(256)). Writes <client>-<holder>.share files.
    Split(SplitArgs),
    /// Rebuild a client's root key from share files (encrypted ones with the
    /// holders' --identity files, or shares their holders decrypted), check
    /// it against the commitment the shares carry, and put it into the
    /// keystore (or a key file with --key-out).
    Combine(CombineArgs),
    /// Decrypt your own share with your age identity, to hand it to the
    /// operator who combines. The output is the share in the clear.
    ShareDecrypt(ShareDecryptArgs),
    /// List clients with key fingerprints (never keys).
    List {
        /// The keystore [default: --config's keystore; with --dev fixtures/keystore.toml].
        #[arg(long, env = "JWT_KEYSTORE")]
        keystore: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct KeyTarget {
    /// The client id (1-64 characters of [A-Za-z0-9._-]).
    pub(crate) client_id: String,
    /// The keystore file; created (mode 0600) if absent [default: --config's
    /// keystore; with --dev fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE")]
    pub(crate) keystore: Option<PathBuf>,
}

/// Where a new key goes: a 0600 file, or stdout when asked for.
#[derive(Args, Debug)]
pub(crate) struct KeyOut {
    /// Write the new key file here (mode 0600, replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub(crate) key_out: Option<PathBuf>,
    /// Print the new key file on stdout. Without it, stdout must be a
    /// terminal: a shell redirect would create the file with the umask's
    /// mode (often 0644), so use --key-out FILE for files.
    #[arg(long, conflicts_with = "key_out")]
    pub(crate) stdout: bool,
}

#[derive(Args, Debug)]
pub(crate) struct SplitArgs {
    /// The client whose current root key is split.
    pub(crate) client_id: String,
    /// The keystore holding the key [default: --config's keystore; with --dev
    /// fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE")]
    pub(crate) keystore: Option<PathBuf>,
    /// How many shares rebuild the key: 2 to the number of holders.
    #[arg(long, short = 't')]
    pub(crate) threshold: usize,
    /// A holder and their age public key (age-keygen prints it), as
    /// NAME=age1...; once per holder (2 to 255). Share indexes follow this order.
    #[arg(long = "holder", value_name = "NAME=age1...", required = true)]
    pub(crate) holders: Vec<String>,
    /// Directory for the share files (created if missing; files are mode 0600
    /// and never overwritten).
    #[arg(long, default_value = ".")]
    pub(crate) out_dir: PathBuf,
    /// Remove the client from the keystore once every share file is written.
    #[arg(long)]
    pub(crate) remove: bool,
}

#[derive(Args, Debug)]
pub(crate) struct CombineArgs {
    /// The client whose key the shares rebuild.
    pub(crate) client_id: String,
    /// Share files: as `keys split` wrote them, or decrypted by their holders
    /// (`keys share-decrypt`). At least the split's threshold.
    #[arg(required = true, value_name = "SHARE_FILE")]
    pub(crate) shares: Vec<PathBuf>,
    /// An age identity file (AGE-SECRET-KEY-1... lines, as age-keygen writes
    /// them); repeat for each holder whose encrypted share is given.
    #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
    pub(crate) identities: Vec<PathBuf>,
    /// The keystore to put the rebuilt key into (created, mode 0600, if
    /// absent) [default: --config's keystore; with --dev fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE")]
    pub(crate) keystore: Option<PathBuf>,
    /// Write the rebuilt key to this file (mode 0600, key file format) instead
    /// of the keystore; e.g. for `jwt-client tpm import --key-file FILE`.
    #[arg(long)]
    pub(crate) key_out: Option<PathBuf>,
    /// If the client is already in the keystore, replace its keys with the
    /// rebuilt key (without it, combine refuses).
    #[arg(long, conflicts_with = "key_out")]
    pub(crate) replace: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ShareDecryptArgs {
    /// Your encrypted share file.
    pub(crate) share: PathBuf,
    /// Your age identity file (AGE-SECRET-KEY-1... lines).
    #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE", required = true)]
    pub(crate) identities: Vec<PathBuf>,
    /// Where to write the decrypted share (mode 0600, never overwritten);
    /// `-` prints it to stdout.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below; relative paths in it are
    /// relative to its directory. The keys commands read its keystore too.
    #[arg(long, env = "JWT_SERVER_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Development only: default to the repository's fixtures (certificate,
    /// key and keystore), whose private keys are public, and say so in the
    /// log. Without it the server and the keys commands have no default
    /// for them.
    #[arg(long, env = "JWT_DEV", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) dev: bool,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "JWT_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Certificate chain, PEM, leaf first; reloaded on SIGHUP and on change
    /// [required; with --dev fixtures/server.pem].
    #[arg(long, env = "JWT_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// The certificate's private key, PEM; reloaded with it [required; with
    /// --dev fixtures/server.key].
    #[arg(long, env = "JWT_KEY")]
    pub(crate) key: Option<PathBuf>,
    /// Keystore TOML; reloaded on SIGHUP and on change [required; with --dev
    /// fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE")]
    pub(crate) keystore: Option<PathBuf>,
    /// The audience tokens must name in `aud` [default: localhost].
    #[arg(long, env = "JWT_AUDIENCE")]
    pub(crate) audience: Option<String>,
    /// Accepted forms, comma-separated: signed, encrypted-then-signed, signed-then-encrypted [default: all].
    #[arg(long, env = "JWT_FORMS", value_delimiter = ',')]
    pub(crate) forms: Option<Vec<Form>>,
    /// Clock skew allowed, seconds [default: 30].
    #[arg(long, env = "JWT_SKEW_SECS")]
    pub(crate) skew_secs: Option<u64>,
    /// Longest accepted token lifetime exp - iat, seconds [default: 300].
    #[arg(long, env = "JWT_MAX_TTL_SECS")]
    pub(crate) max_ttl_secs: Option<u64>,
    /// Connections served at once. When full, the oldest connection that has
    /// not yet presented an accepted token (and is older than
    /// --eviction-min-age-ms) is closed to admit the new one; authenticated
    /// connections are never closed for it [default: 1024].
    #[arg(long, env = "JWT_MAX_CONNECTIONS", help_heading = "Limits")]
    pub(crate) max_connections: Option<usize>,
    /// Connections in the TLS handshake at once; when full, the oldest one
    /// is closed as above [default: 256].
    #[arg(long, env = "JWT_MAX_HANDSHAKES", help_heading = "Limits")]
    pub(crate) max_handshakes: Option<usize>,
    /// Connections without an accepted token from one source address at
    /// once; when full, that address's oldest one is closed as above
    /// [default: 256].
    #[arg(long, env = "JWT_MAX_PENDING_PER_SOURCE", help_heading = "Limits")]
    pub(crate) max_pending_per_source: Option<usize>,
    /// Milliseconds a new connection is safe from being closed to make room;
    /// a real client has its first token accepted well within it
    /// [default: 1000].
    #[arg(long, env = "JWT_EVICTION_MIN_AGE_MS", help_heading = "Limits")]
    pub(crate) eviction_min_age_ms: Option<u64>,
    /// Seconds a client has to finish the TLS handshake [default: 5].
    #[arg(long, env = "JWT_HANDSHAKE_TIMEOUT_SECS", help_heading = "Limits")]
    pub(crate) handshake_timeout_secs: Option<u64>,
    /// Seconds from accept to the first accepted token; PING, SETTINGS and
    /// unauthenticated requests do not extend it [default: 10].
    #[arg(long, env = "JWT_AUTH_TIMEOUT_SECS", help_heading = "Limits")]
    pub(crate) auth_timeout_secs: Option<u64>,
    /// Seconds a client has to send an HTTP/1.1 request head [default: 10].
    #[arg(long, env = "JWT_HEADER_READ_TIMEOUT_SECS", help_heading = "Limits")]
    pub(crate) header_read_timeout_secs: Option<u64>,
    /// Seconds a connection may go without request or response traffic
    /// before it is closed, between keep-alive requests too; HTTP/2 PINGs
    /// and a response the client does not read do not count [default: 60].
    #[arg(long, env = "JWT_IDLE_TIMEOUT_SECS", help_heading = "Limits")]
    pub(crate) idle_timeout_secs: Option<u64>,
    /// HTTP/2 streams per connection at once [default: 8].
    #[arg(long, env = "JWT_MAX_STREAMS", help_heading = "Limits")]
    pub(crate) max_streams: Option<u32>,
    /// Bytes of response data HTTP/2 buffers per stream for a client that
    /// does not read [default: 65536].
    #[arg(long, env = "JWT_MAX_SEND_BUF_BYTES", help_heading = "Limits")]
    pub(crate) max_send_buf_bytes: Option<usize>,
    /// Log lines a second for refused requests and dropped connections; the
    /// rest are counted in one summary line a second [default: 10].
    #[arg(long, env = "JWT_REFUSAL_LOG_PER_SEC", help_heading = "Limits")]
    pub(crate) refusal_log_per_sec: Option<u32>,
    /// Forward every request to this HTTP service instead of serving the
    /// echo app: http://HOST:PORT, https://HOST:PORT (with --upstream-ca) or
    /// unix:/PATH. Each request still needs a bound token (but for
    /// --public-path); the upstream gets the verified client in identity
    /// headers, never the token.
    #[arg(long, env = "JWT_UPSTREAM", help_heading = "Gateway")]
    pub(crate) upstream: Option<String>,
    /// CA certificate(s), PEM, an https:// upstream's certificate must
    /// chain to (TLS 1.3 only).
    #[arg(long, env = "JWT_UPSTREAM_CA", help_heading = "Gateway")]
    pub(crate) upstream_ca: Option<PathBuf>,
    /// Host header sent upstream [default: the client's].
    #[arg(long, env = "JWT_UPSTREAM_HOST", help_heading = "Gateway")]
    pub(crate) upstream_host: Option<String>,
    /// Path prefix forwarded without a token, e.g. the upstream's own
    /// health check; repeat or comma-separate. `/health` matches /health and
    /// /health/..., not /healthz; a path with dot segments, `//`, `;`, `\`
    /// or encoded `.`, `/`, `\` always needs a token.
    #[arg(
        long = "public-path",
        env = "JWT_PUBLIC_PATHS",
        value_delimiter = ',',
        value_name = "PREFIX",
        help_heading = "Gateway"
    )]
    pub(crate) public_paths: Option<Vec<String>>,
    /// Path prefix where a WebSocket upgrade is tunnelled without a token
    /// (under --public-path it needs one); repeat or comma-separate. Same
    /// matching as --public-path. Such a tunnel carries no identity and is
    /// cut at the connection's --auth-timeout-secs.
    #[arg(
        long = "public-websocket-path",
        env = "JWT_PUBLIC_WEBSOCKET_PATHS",
        value_delimiter = ',',
        value_name = "PREFIX",
        help_heading = "Gateway"
    )]
    pub(crate) public_websocket_paths: Option<Vec<String>>,
    /// Forward the client's Authorization header too (by default it is
    /// removed: a bound token is worthless to the upstream).
    #[arg(
        long,
        env = "JWT_FORWARD_TOKEN",
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Gateway"
    )]
    pub(crate) forward_token: bool,
    /// Header carrying the verified client id [default: x-jose-binding-client-id].
    #[arg(long, env = "JWT_CLIENT_ID_HEADER", help_heading = "Gateway")]
    pub(crate) client_id_header: Option<String>,
    /// Header carrying the verified token's form [default: x-jose-binding-form].
    #[arg(long, env = "JWT_FORM_HEADER", help_heading = "Gateway")]
    pub(crate) form_header: Option<String>,
    /// Header carrying the verified claims JSON exactly as signed,
    /// base64url without padding [default: x-jose-binding-claims].
    #[arg(long, env = "JWT_CLAIMS_HEADER", help_heading = "Gateway")]
    pub(crate) claims_header: Option<String>,
    /// Peers (CIDR list, comma-separated) whose Forwarded and X-Forwarded-*
    /// headers are kept and appended to; from any other peer they are
    /// replaced [default: none].
    #[arg(
        long,
        env = "JWT_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR",
        help_heading = "Gateway"
    )]
    pub(crate) trusted_proxies: Option<Vec<String>>,
    /// Seconds to connect to the upstream; then 504 [default: 5].
    #[arg(
        long,
        env = "JWT_UPSTREAM_CONNECT_TIMEOUT_SECS",
        help_heading = "Gateway"
    )]
    pub(crate) upstream_connect_timeout_secs: Option<u64>,
    /// Seconds the upstream has for its response head once the request
    /// body is sent; then 504 [default: 60].
    #[arg(
        long,
        env = "JWT_UPSTREAM_RESPONSE_TIMEOUT_SECS",
        help_heading = "Gateway"
    )]
    pub(crate) upstream_response_timeout_secs: Option<u64>,
    /// Longest silence in a request or response body in flight, and how
    /// long an unused upstream connection is kept in the pool [default: 60].
    #[arg(long, env = "JWT_UPSTREAM_IDLE_TIMEOUT_SECS", help_heading = "Gateway")]
    pub(crate) upstream_idle_timeout_secs: Option<u64>,
    /// Plain-HTTP address for GET /healthz (alive) and GET /readyz
    /// (keystore loaded and upstream reachable, else 503); gateway only
    /// [default: off].
    #[arg(long, env = "JWT_STATUS_LISTEN", help_heading = "Gateway")]
    pub(crate) status_listen: Option<SocketAddr>,
    /// Threads serving connections (like nginx's worker_processes)
    /// [default: one per CPU].
    #[arg(long, env = "JWT_WORKER_THREADS")]
    pub(crate) worker_threads: Option<usize>,
    /// Replay-cache entries per connection [default: 8192].
    #[arg(long, env = "JWT_REPLAY_CAPACITY")]
    pub(crate) replay_capacity: Option<usize>,
    /// Benchmarks only: enable POST /v1/baseline, which accepts the static
    /// bearer token in this file instead of a bound token (`jwt-client bench`
    /// compares the two). Never enable in production.
    #[arg(long, env = "JWT_BASELINE_TOKEN_FILE")]
    pub(crate) baseline_token_file: Option<PathBuf>,
    /// Log format: text or json (flag or env only) [default: text].
    #[arg(long, env = "JWT_LOG_FORMAT")]
    pub(crate) log_format: Option<String>,
}
