//! jwt-client: sends TLS-bound JOSE tokens, and demonstrates the binding.
//!
//! Thin on purpose: connection, key schedule and token issuing live in the
//! jose-binding library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, ValueHint};
use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Reply, Target};
use jose_binding::{tls, ClientId, Form};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

mod bench;
mod demo;
mod enroll;
mod keys;
mod proxy;

/// Client for TLS-bound JOSE tokens.
///
/// After the TLS 1.3 handshake the client exports the connection's keying
/// material, mixes it with its root key and derives per-connection signing
/// and encryption keys; every request carries a fresh token made with them.
#[derive(Parser, Debug)]
#[command(name = "jwt-client", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples (from the repository root, with `jwt-server` running):
  jwt-client enroll jb1.AQ...     # the line `jwt-server keys invite NAME` printed; then:
  jwt-client send --claims '{\"role\":\"ops\"}'   # no flags after enrolling
  jwt-client send --client-id client1 --key-file fixtures/client1.key --claims '{\"role\":\"ops\"}'
  jwt-client send --form signed-then-encrypted --count 5 --client-id client1 --key-file fixtures/client1.key
  jwt-client send --method GET --path /api/orders --client-id client1 --key-file fixtures/client1.key  # through a gateway
  jwt-client demo          # starts its own server; shows the binding at work";

#[derive(Subcommand, Debug)]
enum Command {
    /// Send requests (POST /v1/claims unless --method/--path say otherwise)
    /// with fresh bound tokens on one keep-alive connection.
    Send(SendArgs),
    /// Enrol this machine with an invite from `jwt-server keys invite`:
    /// connect to the server the invite names, accept it only if it
    /// matches the invite's pin, prove the invite with a bound token, and
    /// receive this client's root key on that connection. Writes the
    /// configuration `send` and `proxy` then read (server, CA, client id,
    /// key), so they need no flags.
    Enroll(enroll::EnrollArgs),
    /// Start a server in-process and show each form accepted and replays refused.
    Demo {
        /// Machine-readable result lines instead of the narrated demo.
        #[arg(long)]
        json: bool,
        /// Use client1's root key from a TPM (import fixtures/client1.key first).
        #[arg(long, env = "JWT_TPM_KEY")]
        tpm_key: Option<PathBuf>,
        #[command(flatten)]
        tpm: keys::TpmArgs,
    },
    /// Load a running server: M connections x N requests, bound and (with
    /// --baseline-token-file) the static-bearer baseline in the same run.
    Bench(bench::BenchArgs),
    /// A local plain-HTTP proxy (sidecar): apps in any language send their
    /// requests to it, and it sends them to the server with bound tokens.
    ///
    /// Reverse mode (the default): http://LISTEN/path?q is sent to
    /// SERVER/path?q. Forward-proxy mode, for apps that honour HTTP_PROXY: an
    /// absolute-form request `GET http://HOST/path` is sent to SERVER/path when
    /// HOST is in --allow-host, and refused (403) otherwise, never sent in the
    /// clear. `https://` URLs cannot go through the proxy: the app would open a
    /// CONNECT tunnel and speak TLS inside it, hiding the requests, so no token
    /// could be added; give the app http:// URLs, the sidecar speaks TLS 1.3 to
    /// the server.
    ///
    /// Whoever reaches the listener acts as this client: it listens on
    /// loopback (or a 0600 Unix socket) unless --allow-remote, and refuses
    /// peers that are not on loopback.
    ///
    /// The app's own Authorization header is refused (400
    /// authorization_not_allowed): the sidecar would have to drop it, and an app
    /// that believes it sends its own credential would act as this client
    /// without knowing.
    Proxy(proxy::ProxyArgs),
    /// Root keys in a TPM: import a key file, or time the TPM HMAC.
    #[command(subcommand)]
    Tpm(keys::TpmCommand),
    /// Print the shell completion script (the package installs them).
    Completions(jose_binding_settings::shipped::CompletionsArgs),
    /// Print the man page (roff), as the package installs it.
    #[command(hide = true)]
    Man,
}

/// Where to connect and as whom: shared by `send`, `bench` and `proxy`
/// (where each is also a --config key).
#[derive(clap::Args, Debug, Serialize, Deserialize)]
pub(crate) struct ConnArgs {
    /// Server URL.
    #[arg(long, env = "JWT_SERVER", default_value = "https://localhost:8443")]
    server: String,
    /// CA certificate(s) that sign the server's certificate (PEM).
    #[arg(long, env = "JWT_CA", default_value = "fixtures/ca.pem", value_hint = ValueHint::FilePath)]
    ca: PathBuf,
    /// Trust only a server whose certificate holds this public key,
    /// `sha256:<base64url of the SubjectPublicKeyInfo's SHA-256>`, instead
    /// of --ca (what `jwt-client enroll` records for a server whose invite
    /// pins its key).
    #[arg(long, env = "JWT_SERVER_KEY_PIN", conflicts_with = "ca")]
    server_key_pin: Option<String>,
    /// This client's id (the token's iss and kid) [required].
    #[arg(long, env = "JWT_CLIENT_ID")]
    client_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    key: keys::KeyArgs,
}

impl ConnArgs {
    /// The target and the client setup (root key opened, TLS configured).
    pub(crate) async fn setup(&self, http: Http) -> Result<(Target, ClientSetup), String> {
        let target = Target::parse(&self.server).map_err(|e| e.to_string())?;
        let id = self.client_id.as_deref().ok_or(
            "--client-id is required (or JWT_CLIENT_ID; for the proxy, client_id in --config)",
        )?;
        let id = ClientId::new(id).map_err(|e| format!("--client-id: {e}"))?;
        let version = match http {
            Http::Auto => HttpVersion::Auto,
            Http::H1 => HttpVersion::Http1,
            Http::H2 => HttpVersion::Http2,
        };
        let roots = match &self.server_key_pin {
            Some(_) => rustls::RootCertStore::empty(),
            None => tls::load_roots(&self.ca).map_err(|e| format!("--ca: {e}"))?,
        };
        let mut setup = ClientSetup::new(roots, version, id, self.key.open().await?)
            .map_err(|e| e.to_string())?;
        if let Some(pin) = &self.server_key_pin {
            let digest = enroll::parse_key_pin(pin)?;
            let cfg = jose_binding::pin::pinned_client_config(
                jose_binding::invite::Pin::ServerKey(digest),
                version.alpn(),
            )
            .map_err(|e| e.to_string())?;
            setup.tls = std::sync::Arc::new(cfg);
        }
        Ok((target, setup))
    }
}

/// `jwt-client send`: where the enrolled configuration is, then the
/// settings it may give.
#[derive(clap::Args, Debug)]
struct SendArgs {
    #[command(flatten)]
    profile: enroll::ConfigDir,
    #[command(flatten)]
    settings: SendSettings,
}

/// Every setting of `send`: flag, env var, default, help, and (the field's
/// name) the key in the enrolled configuration.
#[derive(clap::Args, Debug, Serialize, Deserialize)]
struct SendSettings {
    #[command(flatten)]
    #[serde(flatten)]
    conn: ConnArgs,
    /// Token form.
    #[arg(long, env = "JWT_FORM", default_value = "signed")]
    form: Form,
    /// Application claims: a JSON object, or @file.json.
    #[arg(long, env = "JWT_CLAIMS", default_value = "{}")]
    claims: String,
    /// Path to request, e.g. a route of the service behind a `jwt-server
    /// --upstream` gateway.
    #[arg(long, default_value = "/v1/claims")]
    path: String,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Requests on the one connection, each with a fresh token. If the
    /// connection breaks, the client reconnects (fresh keys) and goes on.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Pause between requests, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// `aud` claim [default: the host in --server].
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 60)]
    ttl: u64,
    /// HTTP version to offer by ALPN.
    #[arg(long, value_enum, default_value_t = Http::Auto)]
    http: Http,
    /// Print one JSON object per response instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
pub(crate) enum Http {
    #[serde(rename = "auto")]
    Auto,
    #[value(name = "1.1")]
    #[serde(rename = "1.1")]
    H1,
    #[value(name = "2")]
    #[serde(rename = "2")]
    H2,
}

/// The command line as `--help`, the man page and the completions show it.
fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand(
            "proxy",
            jose_binding_settings::annotate::<proxy::ProxySettings>,
        )
        .mut_subcommand("send", jose_binding_settings::annotate::<SendSettings>)
}

fn main() -> ExitCode {
    // libtss2 logs its own errors to stderr; ours say the same in one line.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The sidecar logs a line per request; the other commands only warnings.
    let (level, json) = match &cli.command {
        Command::Proxy(p) => ("info", p.json),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi && !json);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    // The sidecar runs on one thread: an app's request, its forwarding and
    // the server connection it takes never cross threads (docs/BENCHMARKS.md,
    // "The client sidecar"); one thread carries tens of thousands a second.
    let runtime = match &cli.command {
        Command::Proxy(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwt-client: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Send(a) => match matches.subcommand_matches("send") {
                Some(m) => send(a, m).await,
                None => Err("no send arguments".into()),
            },
            Command::Enroll(a) => enroll::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::Proxy(a) => match matches.subcommand_matches("proxy") {
                Some(m) => proxy::run(a, m).await,
                None => Err("no proxy arguments".into()),
            },
            Command::Demo { json, tpm_key, tpm } => {
                let key = match tpm_key {
                    Some(path) => Some(
                        keys::KeyArgs {
                            key_file: None,
                            tpm_key: Some(path),
                            tpm,
                        }
                        .open()
                        .await?,
                    ),
                    None => None,
                };
                demo::run(json, key).await
            }
            Command::Completions(c) => {
                jose_binding_settings::shipped::print(command(), Some(c.shell))
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(|e| e.to_string())
            }
            Command::Man => jose_binding_settings::shipped::print(command(), None)
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| e.to_string()),
            Command::Tpm(cmd) => tokio::task::spawn_blocking(move || keys::tpm_command(cmd))
                .await
                .map_err(|e| e.to_string())?
                .map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jwt-client: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn read_claims(arg: &str) -> Result<Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--claims {arg}: {e}"))?,
        None => arg.to_owned(),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("--claims is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("--claims must be a JSON object".into());
    }
    Ok(v)
}

async fn send(a: SendArgs, matches: &clap::ArgMatches) -> Result<ExitCode, String> {
    let file = a.profile.enrolled()?;
    let a: SendSettings = jose_binding_settings::layer(a.settings, matches, file.as_ref())
        .map_err(|e| e.to_string())?;
    let claims = read_claims(&a.claims)?;
    let method = http::Method::from_bytes(a.method.as_bytes())
        .map_err(|_| format!("--method {:?} is not an HTTP method", a.method))?;
    let (target, mut setup) = a.conn.setup(a.http).await?;
    setup.audience = a.audience.clone();
    setup.ttl_secs = a.ttl;
    let mut conn = BoundConnection::connect(&target, &setup)
        .await
        .map_err(|e| e.to_string())?;
    announce(&conn, &target, a.json, "connected to");
    let mut refused = 0u32;
    for i in 1..=a.count {
        if i > 1 && a.interval_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(a.interval_ms)).await;
        }
        let reply = match send_one(&mut conn, &a, &method, &claims).await {
            Ok(r) => r,
            // The connection broke (server restarted, network): a token is
            // bound to its connection, so reconnect, derive fresh keys and
            // send the request again with a fresh token.
            Err(e) => {
                if !a.json {
                    eprintln!("request #{i} failed ({e}); reconnecting");
                }
                conn = reconnect(&target, &setup).await?;
                announce(&conn, &target, a.json, "reconnected to");
                send_one(&mut conn, &a, &method, &claims)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        if reply.status != 200 {
            refused += 1;
        }
        print_reply(i, &reply, a.json);
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One request with a fresh token.
async fn send_one(
    conn: &mut BoundConnection,
    a: &SendSettings,
    method: &http::Method,
    claims: &Value,
) -> Result<Reply, jose_binding::client::ClientError> {
    let token = conn.token(a.form, claims)?;
    conn.request(method.clone(), &a.path, Some(&token)).await
}

/// Up to 10 attempts over about 10 s, so a restarting server is waited for.
async fn reconnect(target: &Target, setup: &ClientSetup) -> Result<BoundConnection, String> {
    let mut last = String::new();
    for attempt in 1..=10u64 {
        match BoundConnection::connect(target, setup).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
    }
    Err(format!("cannot reconnect: {last}"))
}

fn announce(conn: &BoundConnection, target: &Target, json: bool, what: &str) {
    if json {
        return;
    }
    let (ekm_fp, sig_fp, enc_fp) = conn.fingerprints();
    eprintln!(
        "{what} {} over {} (TLS 1.3); ekm fp={ekm_fp} sig_key fp={sig_fp} enc_key fp={enc_fp}",
        target.authority,
        if conn.is_h2() { "HTTP/2" } else { "HTTP/1.1" }
    );
}

fn print_reply(i: u32, reply: &Reply, json: bool) {
    let body: Value = reply
        .json()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&reply.body).into_owned()));
    if json {
        outln!(
            "{}",
            serde_json::json!({"request": i, "status": reply.status, "body": body})
        );
    } else {
        outln!("#{i} {} {}", reply.status, body);
    }
}
