//! The command line: every flag, its env var and its help text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueHint};
use jose_binding::gateway::{GatewayConfig, IdentityHeaders};
use jose_binding::server::{FrontendOptions, ServerOptions};
use jose_binding::{Form, Policy};
use serde::{Deserialize, Serialize};

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
/// Each setting comes from its flag, else its environment variable, else
/// its key in the --config TOML file (shown as [config: KEY]), else the
/// default shown. Relative paths in the --config file are relative to its
/// directory. The
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
    pub(crate) global: Global,
    #[command(flatten)]
    pub(crate) settings: ServeSettings,
}

pub(crate) const EXAMPLES: &str = "Examples:
  jwt-server --dev                             # the published test fixtures, 127.0.0.1:8443
  sudo jwt-server init --san api.example.com   # first run: CA, certificate, keystore, /etc/jwt-server/server.toml
  jwt-server --listen 0.0.0.0:443 --cert chain.pem --key key.pem --keystore /etc/jwt/keystore.toml
  jwt-server --config /etc/jwt/server.toml --upstream http://127.0.0.1:3000 --public-path /health
  jwt-server keys add client7 --keystore /etc/jwt/keystore.toml --key-out client7.key
  jwt-server keys rotate client7 --config /etc/jwt/server.toml --key-out client7.key
  jwt-server keys invite client8 --config /etc/jwt/server.toml   # then on the client: jwt-client enroll <line>
  jwt-server keys add client9 --config /etc/jwt/server.toml --bundle client9.bundle --to age1...   # offline
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
    /// First run: a private CA and a server certificate for --san names, an
    /// empty keystore and a config pointing at them, owned by the server's
    /// user; prints the CA pin enrolment invites carry. Never overwrites.
    Init(InitArgs),
    /// Print the shell completion script (the package installs them).
    Completions(jose_binding_settings::shipped::CompletionsArgs),
    /// Print the man page (roff), as the package installs it.
    #[command(hide = true)]
    Man,
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
        #[command(flatten)]
        bundle: BundleArgs,
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
    /// Invite a new client: record a one-time secret for it (valid for
    /// --ttl) and print one line, `jb1.…`, to run on the client as
    /// `jwt-client enroll <line>`. The line is a credential until used:
    /// hand it over as you would a password. A server started with
    /// --enroll turns it into the client's root key on first use.
    Invite(InviteArgs),
    /// List pending invites: client, expiry, advertised URL (never their
    /// secrets).
    Invites {
        /// The keystore [default: --config's keystore; with --dev fixtures/keystore.toml].
        #[arg(long, env = "JWT_KEYSTORE")]
        keystore: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a pending invite: its line stops working at once.
    RevokeInvite {
        #[command(flatten)]
        target: KeyTarget,
    },
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
pub(crate) struct InitArgs {
    /// A name clients dial (DNS name or IP address; repeat for more); the
    /// first is the audience [default: this host's name].
    #[arg(long = "san", value_name = "NAME")]
    pub(crate) sans: Vec<String>,
    /// Where the CA, certificate, keys and keystore go (created 0700).
    #[arg(long, default_value = "/var/lib/jwt-server", value_hint = ValueHint::DirPath)]
    pub(crate) dir: PathBuf,
    /// Who owns what init makes: the user the server runs as [default, as
    /// root: jwt-server, when that user exists].
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Days the server certificate is valid (the CA: 20 years).
    #[arg(long, default_value_t = 825)]
    pub(crate) days: u32,
}

#[derive(Args, Debug)]
pub(crate) struct InviteArgs {
    #[command(flatten)]
    pub(crate) target: KeyTarget,
    /// How long the invite is accepted: 30m, 24h, 7d (at most 30d).
    #[arg(long, default_value = "24h", value_parser = ttl)]
    pub(crate) ttl: std::time::Duration,
    #[command(flatten)]
    pub(crate) server: Advertised,
    /// Write the invite line here (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Print the invite line on stdout even when it is not a terminal.
    #[arg(long, conflicts_with = "out")]
    pub(crate) stdout: bool,
}

/// How an enrolling client reaches and recognises this server.
#[derive(Args, Debug)]
pub(crate) struct Advertised {
    /// The URL clients reach this server at, https://HOST[:PORT]; HOST must
    /// be the server's --audience [default: https://<--audience>:<--listen's port>].
    #[arg(long, value_name = "URL")]
    pub(crate) advertise: Option<String>,
    /// The certificate chain clients see, PEM, leaf first (a TLS-terminating
    /// frontend's) [default: the server's --cert].
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub(crate) chain: Option<PathBuf>,
}

/// `keys add --bundle`: the offline enrolment bundle.
#[derive(Args, Debug)]
pub(crate) struct BundleArgs {
    /// Instead of a key file, write an enrolment bundle here (mode 0600):
    /// the key with the server's URL, CA (or key pin), audience and form,
    /// which `jwt-client enroll FILE` installs on a machine that cannot
    /// reach the server yet.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key_out", "stdout"])]
    pub(crate) bundle: Option<PathBuf>,
    /// Seal the bundle with age to this public key (age1…); `jwt-client
    /// enroll FILE --identity KEYFILE` opens it, and tampering is detected.
    #[arg(long, value_name = "RECIPIENT", requires = "bundle")]
    pub(crate) to: Option<String>,
    #[command(flatten)]
    pub(crate) server: Advertised,
}

/// `--ttl`: a humantime duration from a minute to 30 days.
fn ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30m, 24h, 7d)"))?;
    if d < std::time::Duration::from_secs(60) || d > std::time::Duration::from_secs(30 * 86_400) {
        return Err("an invite lasts from 1m to 30d".into());
    }
    Ok(d)
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

/// Flags that are not settings: which file, which mode, how to log. Each
/// has an env var; none is a config key.
#[derive(Args, Debug)]
pub(crate) struct Global {
    /// TOML file with any of the settings below, each under its [config:
    /// KEY]; relative paths in it are relative to its directory. The keys
    /// commands read its keystore too (as root, /etc/jwt-server/server.toml
    /// when it exists).
    #[arg(long, env = "JWT_SERVER_CONFIG", global = true, value_hint = ValueHint::FilePath)]
    pub(crate) config: Option<PathBuf>,
    /// Development only: default to the repository's fixtures (certificate,
    /// key and keystore), whose private keys are public, and say so in the
    /// log. Without it the server and the keys commands have no default
    /// for them.
    #[arg(long, env = "JWT_DEV", global = true, value_parser = BoolishValueParser::new())]
    pub(crate) dev: bool,
    /// Log format: text or json.
    #[arg(long, env = "JWT_LOG_FORMAT", default_value = "text")]
    pub(crate) log_format: String,
}

/// Every setting of the server, declared once: the field is the flag, its
/// env var, its default and its help, and its name is the `--config` key
/// (`jose_binding_settings` lays the file between env vars and defaults).
/// Defaults are the library's, so `--help` shows what serving uses.
#[derive(Args, Debug, Serialize, Deserialize)]
pub(crate) struct ServeSettings {
    /// Address to listen on; behind --frontend also unix:/PATH, a Unix
    /// socket with --frontend-socket-mode.
    #[arg(long, env = "JWT_LISTEN", default_value = "127.0.0.1:8443")]
    pub(crate) listen: ListenAddr,
    /// Certificate chain, PEM, leaf first; reloaded on SIGHUP and on change
    /// [required; with --dev fixtures/server.pem].
    #[arg(long, env = "JWT_CERT", value_hint = ValueHint::FilePath)]
    pub(crate) cert: Option<PathBuf>,
    /// The certificate's private key, PEM; reloaded with it [required; with
    /// --dev fixtures/server.key].
    #[arg(long, env = "JWT_KEY", value_hint = ValueHint::FilePath)]
    pub(crate) key: Option<PathBuf>,
    /// Keystore TOML; reloaded on SIGHUP and on change [required; with --dev
    /// fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE", value_hint = ValueHint::FilePath)]
    pub(crate) keystore: Option<PathBuf>,
    /// The audience tokens must name in `aud` [default: the first DNS name
    /// of --cert's certificate, else localhost].
    #[arg(long, env = "JWT_AUDIENCE")]
    pub(crate) audience: Option<String>,
    /// Serve POST /v1/enroll: a client holding an invite from `keys invite`
    /// gets its root key on its first, bound connection (at most a few
    /// attempts a second per source address). The server then writes its
    /// keystore file, so it must be able to.
    #[arg(long, env = "JWT_ENROLL", value_parser = BoolishValueParser::new())]
    pub(crate) enroll: bool,
    /// With --enroll: the URL enrolled clients are configured to use, when
    /// not the one they enrolled at (a fleet's, while this replica enrols on
    /// a port of its own) [default: the URL of the invite].
    #[arg(
        long,
        env = "JWT_ENROLL_CLIENT_URL",
        value_name = "URL",
        requires = "enroll"
    )]
    pub(crate) enroll_client_url: Option<String>,
    /// Accepted forms, comma-separated: signed, encrypted-then-signed,
    /// signed-then-encrypted.
    #[arg(long, env = "JWT_FORMS", value_delimiter = ',', default_values_t = Form::ALL)]
    pub(crate) forms: Vec<Form>,
    /// Clock skew allowed, seconds.
    #[arg(long, env = "JWT_SKEW_SECS", default_value_t = Policy::default().skew_secs)]
    pub(crate) skew_secs: u64,
    /// Longest accepted token lifetime exp - iat, seconds.
    #[arg(long, env = "JWT_MAX_TTL_SECS", default_value_t = Policy::default().max_ttl_secs)]
    pub(crate) max_ttl_secs: u64,
    /// Connections served at once. When full, the oldest connection that has
    /// not yet presented an accepted token (and is older than
    /// --eviction-min-age-ms) is closed to admit the new one; authenticated
    /// connections are never closed for it.
    #[arg(long, env = "JWT_MAX_CONNECTIONS", help_heading = "Limits",
          default_value_t = ServerOptions::default().max_connections)]
    pub(crate) max_connections: usize,
    /// Connections in the TLS handshake at once; when full, the oldest one
    /// is closed as above.
    #[arg(long, env = "JWT_MAX_HANDSHAKES", help_heading = "Limits",
          default_value_t = ServerOptions::default().max_handshakes)]
    pub(crate) max_handshakes: usize,
    /// Connections without an accepted token from one source address at
    /// once; when full, that address's oldest one is closed as above.
    #[arg(long, env = "JWT_MAX_PENDING_PER_SOURCE", help_heading = "Limits",
          default_value_t = ServerOptions::default().max_pending_per_source)]
    pub(crate) max_pending_per_source: usize,
    /// Milliseconds a new connection is safe from being closed to make room;
    /// a real client has its first token accepted well within it.
    #[arg(long, env = "JWT_EVICTION_MIN_AGE_MS", help_heading = "Limits",
          default_value_t = millis(ServerOptions::default().eviction_min_age))]
    pub(crate) eviction_min_age_ms: u64,
    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, env = "JWT_HANDSHAKE_TIMEOUT_SECS", help_heading = "Limits",
          default_value_t = ServerOptions::default().handshake_timeout.as_secs())]
    pub(crate) handshake_timeout_secs: u64,
    /// Seconds from accept to the first accepted token; PING, SETTINGS and
    /// unauthenticated requests do not extend it.
    #[arg(long, env = "JWT_AUTH_TIMEOUT_SECS", help_heading = "Limits",
          default_value_t = ServerOptions::default().auth_timeout.as_secs())]
    pub(crate) auth_timeout_secs: u64,
    /// Seconds a client has to send an HTTP/1.1 request head.
    #[arg(long, env = "JWT_HEADER_READ_TIMEOUT_SECS", help_heading = "Limits",
          default_value_t = ServerOptions::default().header_read_timeout.as_secs())]
    pub(crate) header_read_timeout_secs: u64,
    /// Seconds a connection may go without request or response traffic
    /// before it is closed, between keep-alive requests too; HTTP/2 PINGs
    /// and a response the client does not read do not count.
    #[arg(long, env = "JWT_IDLE_TIMEOUT_SECS", help_heading = "Limits",
          default_value_t = ServerOptions::default().idle_timeout.as_secs())]
    pub(crate) idle_timeout_secs: u64,
    /// Seconds after which a connection is asked to finish (HTTP/2 GOAWAY,
    /// HTTP/1.1 closed after its response), so that clients reconnect and
    /// spread again after a scale-out or a key rotation [default: off].
    #[arg(long, env = "JWT_MAX_CONNECTION_AGE_SECS", help_heading = "Limits")]
    pub(crate) max_connection_age_secs: Option<u64>,
    /// HTTP/2 streams per connection at once.
    #[arg(long, env = "JWT_MAX_STREAMS", help_heading = "Limits",
          default_value_t = ServerOptions::default().max_concurrent_streams)]
    pub(crate) max_streams: u32,
    /// Bytes of response data HTTP/2 buffers per stream for a client that
    /// does not read.
    #[arg(long, env = "JWT_MAX_SEND_BUF_BYTES", help_heading = "Limits",
          default_value_t = ServerOptions::default().max_send_buf_size)]
    pub(crate) max_send_buf_bytes: usize,
    /// Log lines a second for refused requests and dropped connections; the
    /// rest are counted in one summary line a second.
    #[arg(long, env = "JWT_REFUSAL_LOG_PER_SEC", help_heading = "Limits",
          default_value_t = ServerOptions::default().refusal_log_per_sec)]
    pub(crate) refusal_log_per_sec: u32,
    /// Forward every request to this HTTP service instead of serving the
    /// echo app: http://HOST:PORT, h2c://HOST:PORT (HTTP/2 without TLS, e.g.
    /// a gRPC server), https://HOST:PORT (with --upstream-ca; HTTP/2 if the
    /// upstream offers it) or unix:/PATH. Each request still needs a bound token (but for
    /// --public-path); the upstream gets the verified client in identity
    /// headers, never the token.
    #[arg(long, env = "JWT_UPSTREAM", help_heading = "Gateway")]
    pub(crate) upstream: Option<String>,
    /// A route: requests under PREFIX go to URL (a scheme as for
    /// --upstream); repeat or comma-separate. The longest prefix that covers
    /// a path wins; --upstream is the route for /. In --config, [[routes]]
    /// tables also say who may call a route (clients, require_claims) and
    /// make one public; these flags are added to them. Reloaded from the
    /// --config file on SIGHUP and on change.
    #[arg(long = "route", env = "JWT_ROUTES", value_delimiter = ',', value_name = "PREFIX=URL",
          value_parser = route_spec, help_heading = "Gateway")]
    pub(crate) routes: Vec<RouteSpec>,
    /// CA certificate(s), PEM, an https:// upstream's certificate must
    /// chain to (TLS 1.3 only).
    #[arg(long, env = "JWT_UPSTREAM_CA", help_heading = "Gateway", value_hint = ValueHint::FilePath)]
    pub(crate) upstream_ca: Option<PathBuf>,
    /// Host sent upstream [default: the client's Host to http:// and unix:
    /// upstreams; the upstream's own HOST:PORT to h2c:// and https://].
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
    pub(crate) public_paths: Vec<String>,
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
    pub(crate) public_websocket_paths: Vec<String>,
    /// Forward the client's Authorization header too (by default it is
    /// removed: a bound token is worthless to the upstream).
    #[arg(long, env = "JWT_FORWARD_TOKEN", value_parser = BoolishValueParser::new(),
          help_heading = "Gateway")]
    pub(crate) forward_token: bool,
    /// Header carrying the verified client id.
    #[arg(long, env = "JWT_CLIENT_ID_HEADER", help_heading = "Gateway",
          default_value_t = IdentityHeaders::default().client_id.to_string())]
    pub(crate) client_id_header: String,
    /// Header carrying the verified token's form.
    #[arg(long, env = "JWT_FORM_HEADER", help_heading = "Gateway",
          default_value_t = IdentityHeaders::default().form.to_string())]
    pub(crate) form_header: String,
    /// Header carrying the verified claims JSON exactly as signed,
    /// base64url without padding.
    #[arg(long, env = "JWT_CLAIMS_HEADER", help_heading = "Gateway",
          default_value_t = IdentityHeaders::default().claims.to_string())]
    pub(crate) claims_header: String,
    /// Peers (CIDR list, comma-separated) whose Forwarded and X-Forwarded-*
    /// headers are kept and appended to, and (in every mode) whose
    /// X-Request-Id is the request's id; from any other peer they are
    /// replaced [default: none].
    #[arg(
        long,
        env = "JWT_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR",
        help_heading = "Gateway"
    )]
    pub(crate) trusted_proxies: Vec<String>,
    /// Seconds to connect to the upstream; then 504.
    #[arg(long, env = "JWT_UPSTREAM_CONNECT_TIMEOUT_SECS", help_heading = "Gateway",
          default_value_t = GatewayConfig::DEFAULT_CONNECT_TIMEOUT.as_secs())]
    pub(crate) upstream_connect_timeout_secs: u64,
    /// Seconds the upstream has for its response head once the request
    /// body is sent; then 504.
    #[arg(long, env = "JWT_UPSTREAM_RESPONSE_TIMEOUT_SECS", help_heading = "Gateway",
          default_value_t = GatewayConfig::DEFAULT_RESPONSE_TIMEOUT.as_secs())]
    pub(crate) upstream_response_timeout_secs: u64,
    /// Longest silence in a request or response body in flight, and how
    /// long an unused upstream connection is kept in the pool.
    #[arg(long, env = "JWT_UPSTREAM_IDLE_TIMEOUT_SECS", help_heading = "Gateway",
          default_value_t = GatewayConfig::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub(crate) upstream_idle_timeout_secs: u64,
    /// Plain-HTTP address for GET /healthz (alive) and GET /readyz (keystore
    /// loaded, not draining and, for a gateway, upstream reachable; else
    /// 503) [default: off].
    #[arg(long, env = "JWT_STATUS_LISTEN")]
    pub(crate) status_listen: Option<SocketAddr>,
    /// Seconds SIGTERM keeps serving new connections with /readyz at 503,
    /// so a load balancer moves them elsewhere, before the server stops
    /// accepting and finishes in-flight requests; a second SIGTERM ends the
    /// wait, Ctrl-C skips it.
    #[arg(long, env = "JWT_DRAIN_SECS", default_value_t = 5)]
    pub(crate) drain_secs: u64,
    /// A frontend terminates TLS and hands on each client connection's
    /// exporter secret (see docs/OPERATIONS.md): the listener then speaks
    /// plain HTTP/1.1 and h2c to the --frontend-from peers only, and needs
    /// no certificate.
    #[arg(long, env = "JWT_FRONTEND", value_enum, default_value_t = Frontend::None,
          help_heading = "Load balancer")]
    pub(crate) frontend: Frontend,
    /// The frontends (CIDR list, comma-separated); a connection from any
    /// other peer is closed at accept.
    #[arg(
        long,
        env = "JWT_FRONTEND_FROM",
        value_delimiter = ',',
        value_name = "CIDR",
        default_value = "127.0.0.1/32,::1/128",
        help_heading = "Load balancer"
    )]
    pub(crate) frontend_from: Vec<String>,
    /// Client TLS connections whose binding state (pinned client, replay
    /// cache) is kept at once behind the frontend.
    #[arg(long, env = "JWT_FRONTEND_MAX_CONNECTIONS", help_heading = "Load balancer",
          default_value_t = FrontendOptions::default().max_connections)]
    pub(crate) frontend_max_connections: usize,
    /// Mode (octal) of the Unix socket of --listen unix:/PATH behind
    /// --frontend: 660 lets the socket's group (the frontend's, e.g. with
    /// systemd's Group=) connect. Whoever can connect can name any client
    /// connection, so no permission for others is accepted.
    #[arg(long, env = "JWT_FRONTEND_SOCKET_MODE", value_name = "OCTAL", default_value = "660",
          value_parser = socket_mode, help_heading = "Load balancer")]
    pub(crate) frontend_socket_mode: u32,
    /// Expect a PROXY protocol header (v1 or v2, as HAProxy's send-proxy-v2
    /// sends) before TLS on each connection from --proxy-protocol-from; the
    /// client it names is the peer in the log, the per-source budget and the
    /// gateway's X-Forwarded-For. A LOCAL header (a health check) keeps the
    /// balancer's address.
    #[arg(long, env = "JWT_PROXY_PROTOCOL", value_parser = BoolishValueParser::new(),
          help_heading = "Load balancer")]
    pub(crate) proxy_protocol: bool,
    /// Balancers (CIDR list, comma-separated) that send the PROXY header: a
    /// connection from one without it, or from any other peer with it, is
    /// closed [default: none].
    #[arg(
        long,
        env = "JWT_PROXY_PROTOCOL_FROM",
        value_delimiter = ',',
        value_name = "CIDR",
        help_heading = "Load balancer"
    )]
    pub(crate) proxy_protocol_from: Vec<String>,
    /// Label the requests metric with the client id too. Off by default:
    /// the number of series then grows with the number of clients.
    #[arg(long, env = "JWT_METRICS_CLIENT_LABELS", value_parser = BoolishValueParser::new())]
    pub(crate) metrics_client_labels: bool,
    /// Threads serving connections (like nginx's worker_processes), each
    /// with its own runtime and, in gateway mode, its own upstream pools:
    /// a connection and its requests stay on one thread
    /// [default: one per CPU].
    #[arg(long, env = "JWT_WORKER_THREADS")]
    pub(crate) worker_threads: Option<usize>,
    /// Replay-cache entries per connection.
    #[arg(long, env = "JWT_REPLAY_CAPACITY", default_value_t = Policy::default().replay_capacity)]
    pub(crate) replay_capacity: usize,
    /// Benchmarks only: enable POST /v1/baseline, which accepts the static
    /// bearer token in this file instead of a bound token (`jwt-client bench`
    /// compares the two). Never enable in production.
    #[arg(long, env = "JWT_BASELINE_TOKEN_FILE", value_hint = ValueHint::FilePath)]
    pub(crate) baseline_token_file: Option<PathBuf>,
}

/// Where the server listens: a TCP address, or behind a frontend a Unix
/// socket (`unix:/PATH`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum ListenAddr {
    /// A socket address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs a path, e.g. unix:/run/jwt-server/frontend.sock".into()),
            Some(path) => Ok(ListenAddr::Unix(PathBuf::from(path))),
            None => s
                .parse()
                .map(ListenAddr::Tcp)
                .map_err(|_| format!("{s:?}: use HOST:PORT (e.g. 127.0.0.1:8443) or unix:/PATH")),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => a.fmt(f),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ListenAddr> for String {
    fn from(a: ListenAddr) -> String {
        a.to_string()
    }
}

/// One route as a setting: a `[[routes]]` table of the --config file, or
/// `PREFIX=URL` from --route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSpec {
    /// Where the route starts (`/admin/`).
    pub(crate) prefix: String,
    /// Where its requests go.
    pub(crate) upstream: String,
    /// Client ids allowed; a trailing `*` matches a prefix of the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) clients: Option<Vec<String>>,
    /// Claims a token must carry, with these exact values.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub(crate) require_claims: serde_json::Map<String, serde_json::Value>,
    /// Forwarded without a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) public: bool,
}

/// `PREFIX=URL`.
fn route_spec(s: &str) -> Result<RouteSpec, String> {
    let (prefix, upstream) = s
        .split_once('=')
        .filter(|(p, u)| p.starts_with('/') && !u.is_empty())
        .ok_or_else(|| format!("{s:?}: use PREFIX=URL, e.g. /orders/=http://127.0.0.1:9001"))?;
    Ok(RouteSpec {
        prefix: prefix.to_owned(),
        upstream: upstream.to_owned(),
        clients: None,
        require_claims: serde_json::Map::new(),
        public: false,
    })
}

/// An octal socket mode with no permission for others.
fn socket_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?}: an octal mode such as 660"))?;
    if mode & 0o007 != 0 {
        return Err(format!(
            "{s}: others could connect and name any client's connection; use 660 or 600"
        ));
    }
    Ok(mode)
}

/// Who terminates TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Frontend {
    /// jwt-server itself.
    None,
    /// HAProxy, with `ssl_fc_exporter_secret` and `ssl_fc_cipher` set on
    /// each request.
    Haproxy,
}

/// Whole milliseconds, for a default shown in `--help`.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The command line parsed, and the server's settings with the --config
/// file laid under the flags and env vars.
pub(crate) struct Parsed {
    pub(crate) command: Option<Command>,
    pub(crate) global: Global,
    pub(crate) settings: ServeSettings,
    /// The routes of --route and JWT_ROUTES alone, which a reload of the
    /// --config file's routes keeps.
    pub(crate) route_flags: Vec<RouteSpec>,
}

/// Parses the command line (exiting with clap's message and code 2 on a
/// usage error, or after --help), then reads the --config file.
/// The config the package installs; root's `keys` commands read it when
/// no --config is given.
pub(crate) const INSTALLED_CONFIG: &str = "/etc/jwt-server/server.toml";

pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The command line as `--help`, the man page and the completions show it.
pub(crate) fn command() -> clap::Command {
    jose_binding_settings::annotate::<ServeSettings>(Cli::command())
}

pub(crate) fn parse() -> Result<Parsed, String> {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `init` writes the --config file; it is not read (it may not exist yet).
    let reads_config = !matches!(cli.command, Some(Command::Init(_)));
    let mut cli = cli;
    // Root's `keys` commands on an installed server use its config.
    if cli.global.config.is_none()
        && matches!(cli.command, Some(Command::Keys(_)))
        && is_root()
        && Path::new(INSTALLED_CONFIG).exists()
    {
        cli.global.config = Some(PathBuf::from(INSTALLED_CONFIG));
    }
    let file = match &cli.global.config {
        Some(p) if reads_config => Some(
            jose_binding_settings::ConfigFile::read(p)
                .map_err(|e| e.to_string())?
                .paths_relative_to_its_dir(),
        ),
        _ => None,
    };
    let route_flags = cli.settings.routes.clone();
    // A --route joins the file's route table rather than replacing it.
    let settings =
        jose_binding_settings::layer_adding(cli.settings, &matches, file.as_ref(), &["routes"])
            .map_err(|e| e.to_string())?;
    Ok(Parsed {
        command: cli.command,
        global: cli.global,
        settings,
        route_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_binding_settings::{declared, undocumented};

    /// The reference tables a user reads: each setting's row names its flag,
    /// env var, config key and default as the declaration does.
    #[test]
    fn every_setting_has_an_env_var_a_config_key_and_a_row_in_the_docs() {
        let docs = [
            include_str!("../../docs/SERVER.md"),
            include_str!("../../docs/GATEWAY.md"),
        ]
        .concat();
        let settings = declared::<ServeSettings>();
        assert!(settings.len() > 30, "{settings:?}");
        assert_eq!(undocumented(&settings, &docs, true), Vec::<String>::new());
        assert_eq!(
            undocumented(&declared::<Global>(), &docs, false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        jose_binding_settings::annotate::<ServeSettings>(Cli::command()).debug_assert();
    }
}
