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
use jose_binding::layer::{Binding, KeystoreHandle};
use jose_binding::server::{self, ReferenceApp, ServerOptions};
use jose_binding::{tls, ClientId, Form, FormSet, Keystore, Policy, RootKey, SoftwareRootKey};
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
/// audience, forms, skew_secs, max_ttl_secs, max_connections,
/// header_read_timeout_secs, replay_capacity), then the defaults shown.
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
    /// Connections served at once; more are closed [default: 1024].
    #[arg(long, env = "JWT_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request head (and to finish TLS) [default: 10].
    #[arg(long, env = "JWT_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
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
    header_read_timeout_secs: Option<u64>,
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
    let header_timeout = Duration::from_secs(
        a.header_read_timeout_secs
            .or(file.header_read_timeout_secs)
            .unwrap_or(10),
    );
    let max_connections = a.max_connections.or(file.max_connections).unwrap_or(1024);
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
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
        opts: ServerOptions {
            max_connections,
            handshake_timeout: header_timeout,
            header_read_timeout: header_timeout,
            ..ServerOptions::default()
        },
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
            ReferenceApp::with_baseline(token.as_bytes())
        }
        None => ReferenceApp::default(),
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
        let binding = Binding::new(handle, s.policy);
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
    let line = format!("{}\n", &*key.to_b64url());
    let fp = RootKey::fingerprint(key);
    match out {
        Some(p) => {
            write_private(p, &line).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
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

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}
