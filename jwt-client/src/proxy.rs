//! `jwt-client proxy`: the client sidecar. Apps in any language send plain
//! HTTP to a local port; the sidecar sends each request over a bound TLS
//! connection with a fresh token. The logic is jose_binding::sidecar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use http::HeaderName;
use jose_binding::sidecar::{serve, Listener, Sidecar, SidecarConfig};
use jose_binding::token::REGISTERED;
use jose_binding::Form;

use crate::{keys, read_claims, ConnArgs, Http};

/// The sidecar's settings; its help text is on `Command::Proxy` in main.rs.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  jwt-client proxy --client-id client1 --key-file fixtures/client1.key &
  curl -X POST http://127.0.0.1:8080/v1/claims
  curl -X POST http://127.0.0.1:8080/v1/claims -H 'x-jose-binding-claims: {\"scope\":\"read\"}'
  http_proxy=http://127.0.0.1:8080 curl http://localhost/v1/claims   # with --allow-host localhost")]
pub struct ProxyArgs {
    /// TOML file with any of the settings below (same names, `_` for `-`);
    /// flags and environment variables take precedence.
    #[arg(long, env = "JWT_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Server URL [default: https://localhost:8443].
    #[arg(long, env = "JWT_SERVER")]
    server: Option<String>,
    /// CA certificate(s) that sign the server's certificate (PEM)
    /// [default: fixtures/ca.pem].
    #[arg(long, env = "JWT_CA")]
    ca: Option<PathBuf>,
    /// This client's id (the tokens' iss and kid).
    #[arg(long, env = "JWT_CLIENT_ID")]
    client_id: Option<String>,
    #[command(flatten)]
    key: keys::KeyArgs,
    /// Where apps connect: HOST:PORT (loopback unless --allow-remote) or
    /// unix:/PATH (created mode 0600) [default: 127.0.0.1:8080].
    #[arg(long, env = "JWT_PROXY_LISTEN")]
    listen: Option<String>,
    /// Listen on a non-loopback address and accept non-loopback peers.
    /// Anyone who reaches the port acts as this client.
    #[arg(long, env = "JWT_PROXY_ALLOW_REMOTE", value_parser = clap::builder::BoolishValueParser::new())]
    allow_remote: bool,
    /// Token form [default: signed].
    #[arg(long, env = "JWT_FORM")]
    form: Option<Form>,
    /// Application claims every token carries: a JSON object, or
    /// @file.json [default: {}].
    #[arg(long, env = "JWT_CLAIMS")]
    claims: Option<String>,
    /// Request header in which an app adds claims for one request (a JSON
    /// object); removed before sending [default: x-jose-binding-claims].
    #[arg(long, env = "JWT_PROXY_CLAIMS_HEADER")]
    claims_header: Option<String>,
    /// Bound connections kept to the server (HTTP/2 multiplexes requests on
    /// each; HTTP/1.1 sends one at a time on each) [default: 4].
    #[arg(long, env = "JWT_PROXY_CONNECTIONS")]
    connections: Option<usize>,
    /// Host a forward-proxy request may name (repeat or comma-separate).
    #[arg(
        long = "allow-host",
        env = "JWT_PROXY_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    allow_hosts: Option<Vec<String>>,
    /// `aud` claim [default: the host in --server].
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Option<String>,
    /// Token lifetime in seconds [default: 60].
    #[arg(long)]
    ttl: Option<u64>,
    /// HTTP version to offer the server by ALPN [default: auto].
    #[arg(long, value_enum)]
    http: Option<Http>,
    /// Log lines as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The --config file: the same settings as the flags.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    ca: Option<PathBuf>,
    client_id: Option<String>,
    key_file: Option<PathBuf>,
    tpm_key: Option<PathBuf>,
    listen: Option<String>,
    allow_remote: Option<bool>,
    form: Option<String>,
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    claims_header: Option<String>,
    connections: Option<usize>,
    allow_hosts: Option<Vec<String>>,
    audience: Option<String>,
    ttl: Option<u64>,
    http: Option<String>,
}

pub async fn run(a: ProxyArgs) -> Result<ExitCode, String> {
    let file: FileConfig = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?;
            // Errors name the place and the setting, never a value.
            jose_binding::keystore::read_settings(&text)
                .map_err(|e| format!("--config {}, {e}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let claims = match (&a.claims, file.claims) {
        (Some(c), _) => match read_claims(c)? {
            serde_json::Value::Object(m) => m,
            _ => return Err("--claims must be a JSON object".into()),
        },
        (None, Some(m)) => m,
        (None, None) => serde_json::Map::new(),
    };
    if let Some(k) = claims.keys().find(|k| REGISTERED.contains(&k.as_str())) {
        return Err(format!("--claims: the sidecar sets {k:?} itself"));
    }
    let claims_header = a
        .claims_header
        .clone()
        .or(file.claims_header)
        .unwrap_or_else(|| "x-jose-binding-claims".into());
    let claims_header = HeaderName::try_from(claims_header.to_ascii_lowercase())
        .map_err(|_| format!("--claims-header {claims_header:?} is not a header name"))?;
    let connections = a.connections.or(file.connections).unwrap_or(4);
    if connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let form = match (a.form, &file.form) {
        (Some(f), _) => f,
        (None, Some(f)) => f.parse::<Form>().map_err(|e| format!("form: {e}"))?,
        (None, None) => Form::Signed,
    };
    let http = match (a.http, file.http.as_deref()) {
        (Some(h), _) => h,
        (None, Some(h)) => <Http as clap::ValueEnum>::from_str(h, true)
            .map_err(|_| format!("http = {h:?}: use auto, 1.1 or 2"))?,
        (None, None) => Http::Auto,
    };
    let mut key = a.key.clone();
    if key.key_file.is_none() && key.tpm_key.is_none() {
        key.key_file = file.key_file;
        key.tpm_key = file.tpm_key;
    }
    let conn = ConnArgs {
        server: a
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| "https://localhost:8443".into()),
        ca: a
            .ca
            .clone()
            .or(file.ca)
            .unwrap_or_else(|| "fixtures/ca.pem".into()),
        client_id: a
            .client_id
            .clone()
            .or(file.client_id)
            .ok_or("--client-id (or client_id in --config) is required")?,
        key,
    };
    let allow_remote = a.allow_remote || file.allow_remote.unwrap_or(false);
    let listen = a
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let (target, mut setup) = conn.setup(http).await?;
    setup.audience = a.audience.clone().or(file.audience);
    setup.ttl_secs = a.ttl.or(file.ttl).unwrap_or(60);
    let mut config = SidecarConfig::new(target.clone(), setup);
    config.form = form;
    config.claims = claims;
    config.claims_header = claims_header;
    config.connections = connections;
    config.allow_hosts = a
        .allow_hosts
        .clone()
        .or(file.allow_hosts)
        .unwrap_or_default();
    let listener = Listener::bind(&listen, allow_remote)
        .await
        .map_err(|e| e.to_string())?;
    if allow_remote {
        tracing::warn!("--allow-remote: anyone who reaches the listener acts as this client");
    }
    tracing::info!(
        listen = %listener.describe(),
        server = %target.authority,
        form = form.as_str(),
        connections,
        "jwt-client proxy ready"
    );
    serve(
        listener,
        Sidecar::new(config),
        Duration::from_secs(10),
        shutdown_signal(),
    )
    .await;
    tracing::info!("jwt-client proxy stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
