//! jwt-server: the reference server for TLS-bound JOSE tokens.
//!
//! Thin on purpose: configuration and composition only; the binding, the
//! verifier and the serving loop live in the jose-binding library.

/// `println!` that ends the process quietly when stdout is gone (`| head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jose_binding::custody::{self, Holder, ShareFile};
use jose_binding::layer::{Binding, KeystoreHandle};
use jose_binding::server::{self, ServerOptions};
use jose_binding::{tls, ClientId, Form, FormSet, Keystore, Policy, RootKey, SoftwareRootKey};
use jwt_server::app::EchoApp;
use serde::Deserialize;

/// Serves POST /v1/claims behind TLS-bound JOSE verification.
///
/// Every TLS 1.3 connection exports its keying material (EKM); a client's
/// token verifies only with keys derived from that EKM and the client's root
/// key, so a token stolen from one connection is refused on any other.
///
/// With no arguments, run from the repository root, it serves on
/// 127.0.0.1:8443 with the test fixtures (fixtures/server.pem,
/// fixtures/server.key, fixtures/keystore.toml).
///
/// Settings come from flags, then environment variables, then the --config
/// TOML file (same names with underscores: listen, cert, key, keystore,
/// audience, forms, skew_secs, max_ttl_secs, replay_capacity, and the
/// limits: max_connections, max_handshakes, max_pending_per_source,
/// eviction_min_age_ms, handshake_timeout_secs, auth_timeout_secs,
/// header_read_timeout_secs, idle_timeout_secs, max_streams,
/// max_send_buf_bytes, refusal_log_per_sec), then the defaults shown.
#[derive(Parser, Debug)]
#[command(name = "jwt-server", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

const EXAMPLES: &str = "Examples:
  jwt-server                                   # fixtures, 127.0.0.1:8443
  jwt-server --listen 0.0.0.0:443 --cert chain.pem --key key.pem --keystore /etc/jwt/keystore.toml
  jwt-server keys add client7 --keystore /etc/jwt/keystore.toml > client7.key
  jwt-server keys split client7 --threshold 2 --holder alice=age1... --holder bob=age1... --holder carol=age1...
  jwt-server keys combine client7 client7-alice.share client7-carol.share --identity alice.key --identity carol.key
  kill -HUP $(pidof jwt-server)                # reload the keystore now

Logs go to stderr; RUST_LOG=debug adds key fingerprints (never keys).";

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default when no command is given).
    Serve,
    /// Manage the keystore: add, rotate or remove a client's root keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a client with a fresh 32-byte root key; prints its key file once.
    Add(KeyTarget),
    /// Put a fresh root key first for a client; the previous current key stays accepted.
    Rotate {
        #[command(flatten)]
        target: KeyTarget,
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
        #[arg(long, env = "JWT_KEYSTORE", default_value = "fixtures/keystore.toml")]
        keystore: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct KeyTarget {
    /// The client id (1-64 characters of [A-Za-z0-9._-]).
    client_id: String,
    /// The keystore file; created (mode 0600) if absent.
    #[arg(long, env = "JWT_KEYSTORE", default_value = "fixtures/keystore.toml")]
    keystore: PathBuf,
    /// Write the new key file here (mode 0600) instead of printing it.
    #[arg(long)]
    key_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SplitArgs {
    /// The client whose current root key is split.
    client_id: String,
    /// The keystore holding the key.
    #[arg(long, env = "JWT_KEYSTORE", default_value = "fixtures/keystore.toml")]
    keystore: PathBuf,
    /// How many shares rebuild the key: 2 to the number of holders.
    #[arg(long, short = 't')]
    threshold: usize,
    /// A holder and their age public key (age-keygen prints it), as
    /// NAME=age1...; once per holder (2 to 255). Share indexes follow this order.
    #[arg(long = "holder", value_name = "NAME=age1...", required = true)]
    holders: Vec<String>,
    /// Directory for the share files (created if missing; files are mode 0600
    /// and never overwritten).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Remove the client from the keystore once every share file is written.
    #[arg(long)]
    remove: bool,
}

#[derive(Args, Debug)]
struct CombineArgs {
    /// The client whose key the shares rebuild.
    client_id: String,
    /// Share files: as `keys split` wrote them, or decrypted by their holders
    /// (`keys share-decrypt`). At least the split's threshold.
    #[arg(required = true, value_name = "SHARE_FILE")]
    shares: Vec<PathBuf>,
    /// An age identity file (AGE-SECRET-KEY-1... lines, as age-keygen writes
    /// them); repeat for each holder whose encrypted share is given.
    #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
    identities: Vec<PathBuf>,
    /// The keystore to put the rebuilt key into (created, mode 0600, if absent).
    #[arg(long, env = "JWT_KEYSTORE", default_value = "fixtures/keystore.toml")]
    keystore: PathBuf,
    /// Write the rebuilt key to this file (mode 0600, key file format) instead
    /// of the keystore; e.g. for `jwt-client tpm import --key-file FILE`.
    #[arg(long)]
    key_out: Option<PathBuf>,
    /// If the client is already in the keystore, replace its keys with the
    /// rebuilt key (without it, combine refuses).
    #[arg(long, conflicts_with = "key_out")]
    replace: bool,
}

#[derive(Args, Debug)]
struct ShareDecryptArgs {
    /// Your encrypted share file.
    share: PathBuf,
    /// Your age identity file (AGE-SECRET-KEY-1... lines).
    #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE", required = true)]
    identities: Vec<PathBuf>,
    /// Where to write the decrypted share (mode 0600, never overwritten);
    /// `-` prints it to stdout.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "JWT_SERVER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "JWT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Certificate chain, PEM, leaf first [default: fixtures/server.pem].
    #[arg(long, env = "JWT_CERT")]
    cert: Option<PathBuf>,
    /// Private key, PEM [default: fixtures/server.key].
    #[arg(long, env = "JWT_KEY")]
    key: Option<PathBuf>,
    /// Keystore TOML; reloaded on SIGHUP and on change [default: fixtures/keystore.toml].
    #[arg(long, env = "JWT_KEYSTORE")]
    keystore: Option<PathBuf>,
    /// The audience tokens must name in `aud` [default: localhost].
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Option<String>,
    /// Accepted forms, comma-separated: signed, encrypted-then-signed, signed-then-encrypted [default: all].
    #[arg(long, env = "JWT_FORMS", value_delimiter = ',')]
    forms: Option<Vec<Form>>,
    /// Clock skew allowed, seconds [default: 30].
    #[arg(long, env = "JWT_SKEW_SECS")]
    skew_secs: Option<u64>,
    /// Longest accepted token lifetime exp - iat, seconds [default: 300].
    #[arg(long, env = "JWT_MAX_TTL_SECS")]
    max_ttl_secs: Option<u64>,
    /// Connections served at once. When full, the oldest connection that has
    /// not yet presented an accepted token (and is older than
    /// --eviction-min-age-ms) is closed to admit the new one; authenticated
    /// connections are never closed for it [default: 1024].
    #[arg(long, env = "JWT_MAX_CONNECTIONS", help_heading = "Limits")]
    max_connections: Option<usize>,
    /// Connections in the TLS handshake at once; when full, the oldest one
    /// is closed as above [default: 256].
    #[arg(long, env = "JWT_MAX_HANDSHAKES", help_heading = "Limits")]
    max_handshakes: Option<usize>,
    /// Connections without an accepted token from one source address at
    /// once; when full, that address's oldest one is closed as above
    /// [default: 256].
    #[arg(long, env = "JWT_MAX_PENDING_PER_SOURCE", help_heading = "Limits")]
    max_pending_per_source: Option<usize>,
    /// Milliseconds a new connection is safe from being closed to make room;
    /// a real client has its first token accepted well within it
    /// [default: 1000].
    #[arg(long, env = "JWT_EVICTION_MIN_AGE_MS", help_heading = "Limits")]
    eviction_min_age_ms: Option<u64>,
    /// Seconds a client has to finish the TLS handshake [default: 5].
    #[arg(long, env = "JWT_HANDSHAKE_TIMEOUT_SECS", help_heading = "Limits")]
    handshake_timeout_secs: Option<u64>,
    /// Seconds from accept to the first accepted token; PING, SETTINGS and
    /// unauthenticated requests do not extend it [default: 10].
    #[arg(long, env = "JWT_AUTH_TIMEOUT_SECS", help_heading = "Limits")]
    auth_timeout_secs: Option<u64>,
    /// Seconds a client has to send an HTTP/1.1 request head [default: 10].
    #[arg(long, env = "JWT_HEADER_READ_TIMEOUT_SECS", help_heading = "Limits")]
    header_read_timeout_secs: Option<u64>,
    /// Seconds a connection may go without request or response traffic
    /// before it is closed, between keep-alive requests too; HTTP/2 PINGs
    /// and a response the client does not read do not count [default: 60].
    #[arg(long, env = "JWT_IDLE_TIMEOUT_SECS", help_heading = "Limits")]
    idle_timeout_secs: Option<u64>,
    /// HTTP/2 streams per connection at once [default: 8].
    #[arg(long, env = "JWT_MAX_STREAMS", help_heading = "Limits")]
    max_streams: Option<u32>,
    /// Bytes of response data HTTP/2 buffers per stream for a client that
    /// does not read [default: 65536].
    #[arg(long, env = "JWT_MAX_SEND_BUF_BYTES", help_heading = "Limits")]
    max_send_buf_bytes: Option<usize>,
    /// Log lines a second for refused requests and dropped connections; the
    /// rest are counted in one summary line a second [default: 10].
    #[arg(long, env = "JWT_REFUSAL_LOG_PER_SEC", help_heading = "Limits")]
    refusal_log_per_sec: Option<u32>,
    /// Replay-cache entries per connection [default: 8192].
    #[arg(long, env = "JWT_REPLAY_CAPACITY")]
    replay_capacity: Option<usize>,
    /// Benchmarks only: enable POST /v1/baseline, which accepts the static
    /// bearer token in this file instead of a bound token (`jwt-client bench`
    /// compares the two). Never enable in production.
    #[arg(long, env = "JWT_BASELINE_TOKEN_FILE")]
    baseline_token_file: Option<PathBuf>,
    /// Log format: text or json (flag or env only) [default: text].
    #[arg(long, env = "JWT_LOG_FORMAT")]
    log_format: Option<String>,
}

/// The --config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    keystore: Option<PathBuf>,
    audience: Option<String>,
    forms: Option<Vec<String>>,
    skew_secs: Option<u64>,
    max_ttl_secs: Option<u64>,
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    max_pending_per_source: Option<usize>,
    eviction_min_age_ms: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    auth_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_streams: Option<u32>,
    max_send_buf_bytes: Option<usize>,
    refusal_log_per_sec: Option<u32>,
    replay_capacity: Option<usize>,
}

/// Settings after flags, environment, file and defaults are merged.
struct Settings {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    keystore: PathBuf,
    policy: Policy,
    opts: ServerOptions,
}

fn settings(a: &ServeArgs) -> Result<Settings, String> {
    let file: FileConfig = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?;
            toml::from_str(&text)
                .map_err(|e| format!("--config {}: {}", p.display(), e.message()))?
        }
        None => FileConfig::default(),
    };
    let forms = match (&a.forms, &file.forms) {
        (Some(f), _) => f.iter().copied().collect(),
        (None, Some(f)) => f
            .iter()
            .map(|s| s.parse::<Form>().map_err(|e| e.to_string()))
            .collect::<Result<FormSet, _>>()?,
        (None, None) => FormSet::ALL,
    };
    if forms == FormSet::NONE {
        return Err("--forms names no form".into());
    }
    let defaults = Policy::default();
    let opts = ServerOptions::default();
    let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
        flag.or(file)
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(default)
    };
    let opts = ServerOptions {
        max_connections: a
            .max_connections
            .or(file.max_connections)
            .unwrap_or(opts.max_connections),
        max_handshakes: a
            .max_handshakes
            .or(file.max_handshakes)
            .unwrap_or(opts.max_handshakes),
        max_pending_per_source: a
            .max_pending_per_source
            .or(file.max_pending_per_source)
            .unwrap_or(opts.max_pending_per_source),
        eviction_min_age: a
            .eviction_min_age_ms
            .or(file.eviction_min_age_ms)
            .map(Duration::from_millis)
            .unwrap_or(opts.eviction_min_age),
        handshake_timeout: secs(
            a.handshake_timeout_secs,
            file.handshake_timeout_secs,
            opts.handshake_timeout,
        ),
        auth_timeout: secs(
            a.auth_timeout_secs,
            file.auth_timeout_secs,
            opts.auth_timeout,
        ),
        header_read_timeout: secs(
            a.header_read_timeout_secs,
            file.header_read_timeout_secs,
            opts.header_read_timeout,
        ),
        idle_timeout: secs(
            a.idle_timeout_secs,
            file.idle_timeout_secs,
            opts.idle_timeout,
        ),
        max_concurrent_streams: a
            .max_streams
            .or(file.max_streams)
            .unwrap_or(opts.max_concurrent_streams),
        max_send_buf_size: a
            .max_send_buf_bytes
            .or(file.max_send_buf_bytes)
            .unwrap_or(opts.max_send_buf_size),
        refusal_log_per_sec: a
            .refusal_log_per_sec
            .or(file.refusal_log_per_sec)
            .unwrap_or(opts.refusal_log_per_sec),
        ..opts
    };
    for (name, value) in [
        ("--max-connections", opts.max_connections),
        ("--max-handshakes", opts.max_handshakes),
        ("--max-pending-per-source", opts.max_pending_per_source),
        ("--max-streams", opts.max_concurrent_streams as usize),
    ] {
        if value == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    Ok(Settings {
        listen: a
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
        cert: a
            .cert
            .clone()
            .or(file.cert)
            .unwrap_or_else(|| "fixtures/server.pem".into()),
        key: a
            .key
            .clone()
            .or(file.key)
            .unwrap_or_else(|| "fixtures/server.key".into()),
        keystore: a
            .keystore
            .clone()
            .or(file.keystore)
            .unwrap_or_else(|| "fixtures/keystore.toml".into()),
        policy: Policy {
            audience: a
                .audience
                .clone()
                .or(file.audience)
                .unwrap_or(defaults.audience),
            forms,
            skew_secs: a.skew_secs.or(file.skew_secs).unwrap_or(defaults.skew_secs),
            max_ttl_secs: a
                .max_ttl_secs
                .or(file.max_ttl_secs)
                .unwrap_or(defaults.max_ttl_secs),
            replay_capacity: a
                .replay_capacity
                .or(file.replay_capacity)
                .unwrap_or(defaults.replay_capacity),
        },
        opts,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = cli.serve.log_format.as_deref() == Some("json");
    init_logging(json_logs);
    let result = match cli.command {
        None | Some(Command::Serve) => run_server(&cli.serve),
        Some(Command::Keys(k)) => keys(k),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwt-server: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn missing_hint(what: &str, path: &Path) -> String {
    if path.starts_with("fixtures") {
        format!(
            "{what} {} not found: run from the repository root, or pass --{what}",
            path.display()
        )
    } else {
        format!("{what} {} not found", path.display())
    }
}

fn run_server(args: &ServeArgs) -> Result<(), String> {
    let s = settings(args)?;
    for (what, p) in [
        ("cert", &s.cert),
        ("key", &s.key),
        ("keystore", &s.keystore),
    ] {
        if !p.exists() {
            return Err(missing_hint(what, p));
        }
    }
    let chain = tls::load_certs(&s.cert).map_err(|e| e.to_string())?;
    let key = tls::load_key(&s.key).map_err(|e| e.to_string())?;
    let tls_config = Arc::new(tls::server_config(chain, key).map_err(|e| e.to_string())?);
    let keystore = Keystore::load(&s.keystore).map_err(|e| e.to_string())?;
    warn_if_readable(&s.keystore);
    let handle = KeystoreHandle::new(keystore);
    let binding = Binding::new(handle.clone(), s.policy.clone());
    let app = EchoApp::new(&binding.layer());
    let app = match &args.baseline_token_file {
        Some(p) => {
            let token = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("--baseline-token-file {}: {e}", p.display()))?,
            );
            let token = token.trim();
            if token.len() < 16 {
                return Err("--baseline-token-file: use a token of at least 16 characters".into());
            }
            tracing::warn!("POST /v1/baseline is enabled (static bearer token, no binding): for benchmarks only");
            app.with_baseline(token.as_bytes())
        }
        None => app,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(s.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(
            listen = %local,
            audience = %s.policy.audience,
            forms = ?s.policy.forms.iter().map(Form::as_str).collect::<Vec<_>>(),
            clients = handle.snapshot().len(),
            keystore = %s.keystore.display(),
            "jwt-server ready (TLS 1.3 only)"
        );
        let reloader = tokio::spawn(jose_binding::reload::watch(
            handle.clone(),
            s.keystore.clone(),
            Duration::from_secs(2),
        ));
        server::serve(
            listener,
            tls_config,
            binding,
            app,
            s.opts,
            shutdown_signal(),
        )
        .await;
        reloader.abort();
        tracing::info!("jwt-server stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: finishing in-flight requests");
}

fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "keystore is readable by group or others; chmod 600 it");
            }
        }
    }
}

fn load_or_empty(path: &Path) -> Result<Keystore, String> {
    if path.exists() {
        Keystore::load(path).map_err(|e| e.to_string())
    } else {
        Ok(Keystore::default())
    }
}

fn keys(cmd: KeysCommand) -> Result<(), String> {
    match cmd {
        KeysCommand::Add(t) => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            if ks.get(id.as_str()).is_some() {
                return Err(format!(
                    "client {id} already exists; use `keys rotate {id}`"
                ));
            }
            let key = SoftwareRootKey::generate();
            ks.set(id.clone(), vec![key.clone()]);
            save(&ks, &t.keystore)?;
            hand_out(&id, &key, t.key_out.as_deref(), "added")
        }
        KeysCommand::Rotate { target: t, keep } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", t.keystore.display()))?;
            let key = SoftwareRootKey::generate();
            let mut keys = vec![key.clone()];
            keys.extend(old.keys.iter().take(keep).cloned());
            ks.set(id.clone(), keys);
            save(&ks, &t.keystore)?;
            hand_out(&id, &key, t.key_out.as_deref(), "rotated")
        }
        KeysCommand::Remove {
            target: t,
            previous,
        } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", t.keystore.display()))?;
            if previous {
                let current = old.keys[0].clone();
                ks.set(id.clone(), vec![current]);
                eprintln!("client {id}: previous keys removed; only the current key is accepted");
            } else {
                ks.remove(id.as_str());
                eprintln!("client {id} removed");
            }
            save(&ks, &t.keystore)
        }
        KeysCommand::Split(a) => split(a),
        KeysCommand::Combine(a) => combine(a),
        KeysCommand::ShareDecrypt(a) => share_decrypt(a),
        KeysCommand::List { keystore, json } => {
            let ks = Keystore::load(&keystore).map_err(|e| e.to_string())?;
            let rows: Vec<_> = ks
                .clients()
                .map(|c| {
                    let fps: Vec<String> = c
                        .keys
                        .iter()
                        .map(|k| RootKey::fingerprint(k).to_string())
                        .collect();
                    (c.id.to_string(), fps)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, fps)| serde_json::json!({"client_id": id, "key_fingerprints": fps}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v));
            } else {
                for (id, fps) in rows {
                    outln!(
                        "{id}\tcurrent {}\tprevious [{}]",
                        fps[0],
                        fps[1..].join(", ")
                    );
                }
            }
            Ok(())
        }
    }
}

fn save(ks: &Keystore, path: &Path) -> Result<(), String> {
    ks.save_atomic(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Gives the new key to the operator exactly once: to a 0600 file, or stdout.
fn hand_out(
    id: &ClientId,
    key: &SoftwareRootKey,
    out: Option<&Path>,
    verb: &str,
) -> Result<(), String> {
    let line = key.to_key_file();
    let fp = RootKey::fingerprint(key);
    match out {
        Some(p) => {
            write_private(p, line.as_bytes(), Existing::Replace)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            eprintln!(
                "client {id} {verb}: new key fp={fp} written to {}",
                p.display()
            );
        }
        None => {
            eprintln!("client {id} {verb}: new key fp={fp}; its key file follows on stdout (shown once, store it now)");
            let mut out = std::io::stdout();
            if std::io::Write::write_all(&mut out, line.as_bytes()).is_err() {
                return Err(
                    "cannot write the key to stdout; the keystore has it, rotate again".into(),
                );
            }
        }
    }
    Ok(())
}

/// `keys split`: shares to files first, then (with --remove) the keystore.
fn split(a: SplitArgs) -> Result<(), String> {
    let id = ClientId::new(&a.client_id).map_err(|e| e.to_string())?;
    if !a.keystore.exists() {
        return Err(missing_hint("keystore", &a.keystore));
    }
    let mut ks = Keystore::load(&a.keystore).map_err(|e| e.to_string())?;
    let entry = ks
        .get(id.as_str())
        .ok_or_else(|| format!("no client {id} in {}", a.keystore.display()))?
        .clone();
    // Parsed here, not by clap, whose errors would echo a mistaken value
    // (a secret key pasted instead of a public one).
    let holders = a
        .holders
        .iter()
        .map(|h| h.parse::<Holder>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let split =
        custody::split(&id, &entry.keys[0], a.threshold, &holders).map_err(|e| e.to_string())?;
    let paths: Vec<PathBuf> = holders
        .iter()
        .map(|h| a.out_dir.join(format!("{id}-{}.share", h.name())))
        .collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(format!(
            "{} already exists; move it away or choose another --out-dir (nothing written)",
            p.display()
        ));
    }
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| format!("--out-dir {}: {e}", a.out_dir.display()))?;
    let mut written: Vec<&Path> = Vec::with_capacity(paths.len());
    for (share, path) in split.shares.iter().zip(&paths) {
        if let Err(e) = write_private(path, share.to_text().as_bytes(), Existing::Refuse) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(format!(
                "cannot write {}: {e}; the share files written so far were removed",
                path.display()
            ));
        }
        written.push(path);
    }
    let n = split.shares.len();
    outln!(
        "{id}: current key fp={} split into {n} shares, any {} of which rebuild it",
        split.key_fingerprint,
        split.threshold
    );
    outln!("group {}", split.group);
    let width = paths
        .iter()
        .map(|p| p.display().to_string().len())
        .max()
        .unwrap_or(0);
    let iw = n.to_string().len();
    for (share, path) in split.shares.iter().zip(&paths) {
        outln!(
            "  #{:<iw$}  {:<width$}  encrypted to {} ({})",
            share.meta.index,
            path.display().to_string(),
            share.meta.recipient,
            share.meta.holder
        );
    }
    let previous = entry.keys.len() - 1;
    if previous > 0 {
        eprintln!(
            "note: {id} also has {previous} previous key(s), still accepted; they are not in the shares{}",
            if a.remove { " and --remove drops them" } else { "" }
        );
    }
    if a.remove {
        ks.remove(id.as_str());
        save(&ks, &a.keystore)?;
        outln!(
            "{id} removed from {}; rebuild it with `jwt-server keys combine {id} SHARE_FILE...`",
            a.keystore.display()
        );
    }
    Ok(())
}

/// Where `keys combine` puts the rebuilt key.
enum Destination<'a> {
    KeyFile(&'a Path),
    Keystore(Keystore),
}

/// `keys combine`: read, decrypt, check and rebuild; write only a checked key.
fn combine(a: CombineArgs) -> Result<(), String> {
    let id = ClientId::new(&a.client_id).map_err(|e| e.to_string())?;
    // Refuse before anything is decrypted if the result could not be stored.
    let destination = match &a.key_out {
        Some(p) => Destination::KeyFile(p),
        None => {
            let ks = load_or_empty(&a.keystore)?;
            if let Some(old) = ks.get(id.as_str()) {
                if !a.replace {
                    return Err(format!(
                        "client {id} is already in {} (current key fp={}); pass --replace to replace its keys with the rebuilt one, or --key-out FILE",
                        a.keystore.display(),
                        RootKey::fingerprint(&old.keys[0])
                    ));
                }
            }
            Destination::Keystore(ks)
        }
    };
    let files = a
        .shares
        .iter()
        .map(|p| ShareFile::read(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let identities = custody::read_identities(&a.identities).map_err(|e| e.to_string())?;
    let plain = files
        .iter()
        .map(|f| f.open(&identities))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let rebuilt = custody::combine(&id, &plain).map_err(|e| e.to_string())?;
    drop(plain);
    let fp = RootKey::fingerprint(&rebuilt.key);
    let used: Vec<String> = rebuilt
        .used
        .iter()
        .map(|(i, holder)| format!("#{i} {holder}"))
        .collect();
    let summary = format!(
        "{id}: key fp={fp} rebuilt from shares {} of group {} ({} of {} needed); commitment verified",
        used.join(", "),
        rebuilt.group,
        rebuilt.threshold,
        rebuilt.shares
    );
    match destination {
        Destination::KeyFile(p) => {
            write_private(p, rebuilt.key.to_key_file().as_bytes(), Existing::Replace)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            outln!("{summary}");
            outln!(
                "{id}: key written to {} (mode 0600); e.g. jwt-client tpm import --key-file {} --out {id}.tpm.pem --delete-key-file",
                p.display(),
                p.display()
            );
        }
        Destination::Keystore(mut ks) => {
            ks.set(id.clone(), vec![rebuilt.key.clone()]);
            save(&ks, &a.keystore)?;
            outln!("{summary}");
            outln!(
                "{id}: put into {} as its current key; a running server picks it up within 2 s",
                a.keystore.display()
            );
        }
    }
    Ok(())
}

/// `keys share-decrypt`: a holder's own share, in the clear, to a new file.
fn share_decrypt(a: ShareDecryptArgs) -> Result<(), String> {
    let file = ShareFile::read(&a.share).map_err(|e| e.to_string())?;
    if matches!(file, ShareFile::Plain(_)) {
        return Err(format!("{} is already decrypted", a.share.display()));
    }
    let identities = custody::read_identities(&a.identities).map_err(|e| e.to_string())?;
    let plain = file.open(&identities).map_err(|e| e.to_string())?;
    let text = plain.to_text();
    let m = &plain.meta;
    if a.out.as_os_str() == "-" {
        let mut out = std::io::stdout();
        std::io::Write::write_all(&mut out, text.as_bytes())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    } else {
        write_private(&a.out, text.as_bytes(), Existing::Refuse)
            .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    }
    eprintln!(
        "share #{} of {}'s key (holder {}, group {}) decrypted{}: it is no longer encrypted; hand it to the operator who combines over a trusted channel, and delete it afterwards",
        m.index,
        m.client,
        m.holder,
        m.group,
        if a.out.as_os_str() == "-" {
            " to stdout".to_owned()
        } else {
            format!(" to {} (mode 0600)", a.out.display())
        }
    );
    Ok(())
}

/// Whether [`write_private`] may replace an existing file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    Replace,
    Refuse,
}

/// Writes a secret to a file with mode 0600, synced to disk. A replaced file
/// is tightened to 0600 before it is truncated and written: the mode given
/// at open applies only to files it creates.
fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    match existing {
        Existing::Replace => opts.create(true),
        Existing::Refuse => opts.create_new(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.set_len(0)?;
    f.write_all(bytes)?;
    f.sync_all()
}
