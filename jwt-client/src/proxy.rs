//! `jwt-client proxy`: the client sidecar. Apps in any language send plain
//! HTTP to a local port; the sidecar sends each request over a bound TLS
//! connection with a fresh token. The logic is jose_binding::sidecar.

use std::process::ExitCode;
use std::time::Duration;

use http::HeaderName;
use jose_binding::issuer::REGISTERED;
use jose_binding::sidecar::{serve, Listener, Sidecar, SidecarConfig};
use jose_binding::Form;

use crate::{read_claims, ConnArgs, Http};

/// Send an app's plain-HTTP requests to the server with bound tokens.
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
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  jwt-client proxy --client-id client1 --key-file fixtures/client1.key &
  curl -X POST http://127.0.0.1:8080/v1/claims
  curl -X POST http://127.0.0.1:8080/v1/claims -H 'x-jose-binding-claims: {\"scope\":\"read\"}'
  HTTP_PROXY=http://127.0.0.1:8080 curl http://localhost/v1/claims   # with --allow-host localhost")]
pub struct ProxyArgs {
    /// Server URL, CA, client id and root key.
    #[command(flatten)]
    conn: ConnArgs,
    /// Where apps connect: HOST:PORT (loopback unless --allow-remote) or
    /// unix:/PATH (created mode 0600).
    #[arg(long, env = "JWT_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Listen on a non-loopback address and accept non-loopback peers.
    /// Anyone who reaches the port acts as this client.
    #[arg(long, env = "JWT_PROXY_ALLOW_REMOTE")]
    allow_remote: bool,
    /// Token form.
    #[arg(long, env = "JWT_FORM", default_value = "signed")]
    form: Form,
    /// Application claims every token carries: a JSON object, or @file.json.
    #[arg(long, env = "JWT_CLAIMS", default_value = "{}")]
    claims: String,
    /// Request header in which an app adds claims for one request (a JSON
    /// object); removed before sending.
    #[arg(
        long,
        env = "JWT_PROXY_CLAIMS_HEADER",
        default_value = "x-jose-binding-claims"
    )]
    claims_header: String,
    /// Bound connections kept to the server (HTTP/2 multiplexes requests on
    /// each; HTTP/1.1 sends one at a time on each).
    #[arg(long, env = "JWT_PROXY_CONNECTIONS", default_value_t = 4)]
    connections: usize,
    /// Host a forward-proxy request may name (repeat or comma-separate).
    #[arg(
        long = "allow-host",
        env = "JWT_PROXY_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    allow_hosts: Vec<String>,
    /// `aud` claim [default: the host in --server].
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 60)]
    ttl: u64,
    /// HTTP version to offer the server by ALPN.
    #[arg(long, value_enum, default_value_t = Http::Auto)]
    http: Http,
    /// Log lines as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub async fn run(a: ProxyArgs) -> Result<ExitCode, String> {
    let claims = match read_claims(&a.claims)? {
        serde_json::Value::Object(m) => m,
        _ => return Err("--claims must be a JSON object".into()),
    };
    if let Some(k) = claims.keys().find(|k| REGISTERED.contains(&k.as_str())) {
        return Err(format!("--claims: the sidecar sets {k:?} itself"));
    }
    let claims_header = HeaderName::try_from(a.claims_header.to_ascii_lowercase())
        .map_err(|_| format!("--claims-header {:?} is not a header name", a.claims_header))?;
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let (target, mut setup) = a.conn.setup(a.http).await?;
    setup.audience = a.audience.clone();
    setup.ttl_secs = a.ttl;
    let mut config = SidecarConfig::new(target.clone(), setup);
    config.form = a.form;
    config.claims = claims;
    config.claims_header = claims_header;
    config.connections = a.connections;
    config.allow_hosts = a.allow_hosts.clone();
    let listener = Listener::bind(&a.listen, a.allow_remote).await?;
    if a.allow_remote {
        tracing::warn!("--allow-remote: anyone who reaches the listener acts as this client");
    }
    tracing::info!(
        listen = %listener.describe(),
        server = %target.authority,
        form = a.form.as_str(),
        connections = a.connections,
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
