//! `jwt-client proxy`: the client sidecar. Apps in any language send plain
//! HTTP to a local port; the sidecar sends each request over a bound TLS
//! connection with a fresh token. The logic is jose_binding::sidecar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgMatches, ValueHint};
use http::HeaderName;
use jose_binding::sidecar::{serve, Listener, Sidecar, SidecarConfig};
use jose_binding::token::REGISTERED;
use jose_binding::{Form, DEFAULT_TTL_SECS};
use jose_binding_settings::ConfigFile;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{read_claims, ConnArgs, Http};

/// `jwt-client proxy`: the file and the log format, then the settings;
/// its help text is on `Command::Proxy` in main.rs.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  jwt-client proxy --client-id client1 --key-file fixtures/client1.key &
  curl -X POST http://127.0.0.1:8080/v1/claims
  curl -X POST http://127.0.0.1:8080/v1/claims -H 'x-jose-binding-claims: {\"scope\":\"read\"}'
  http_proxy=http://127.0.0.1:8080 curl http://localhost/v1/claims   # with --allow-host localhost")]
pub struct ProxyArgs {
    /// TOML file with any of the settings below, each under its [config:
    /// KEY]; flags and environment variables take precedence [default: the
    /// configuration `jwt-client enroll` wrote, if any].
    #[arg(long, env = "JWT_PROXY_CONFIG", value_hint = ValueHint::FilePath)]
    config: Option<PathBuf>,
    #[command(flatten)]
    profile: crate::enroll::ConfigDir,
    /// Log lines as JSON.
    #[arg(long, env = "JWT_PROXY_JSON", value_parser = BoolishValueParser::new())]
    pub(crate) json: bool,
    #[command(flatten)]
    settings: ProxySettings,
}

/// Every setting of the sidecar, declared once: flag, env var, default,
/// help, and (the field's name) the `--config` key.
#[derive(clap::Args, Debug, Serialize, Deserialize)]
pub struct ProxySettings {
    #[command(flatten)]
    #[serde(flatten)]
    conn: ConnArgs,
    /// Where apps connect: HOST:PORT (loopback unless --allow-remote) or
    /// unix:/PATH (created mode 0600).
    #[arg(long, env = "JWT_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Listen on a non-loopback address and accept non-loopback peers.
    /// Anyone who reaches the port acts as this client.
    #[arg(long, env = "JWT_PROXY_ALLOW_REMOTE", value_parser = BoolishValueParser::new())]
    allow_remote: bool,
    /// Token form.
    #[arg(long, env = "JWT_FORM", default_value_t = Form::Signed)]
    form: Form,
    /// Application claims every token carries: a JSON object, or
    /// @file.json (in --config: a table).
    #[arg(long, env = "JWT_CLAIMS", default_value = "{}")]
    claims: ClaimsArg,
    /// Request header in which an app adds claims for one request (a JSON
    /// object); removed before sending.
    #[arg(long, env = "JWT_PROXY_CLAIMS_HEADER",
          default_value = SidecarConfig::DEFAULT_CLAIMS_HEADER)]
    claims_header: String,
    /// Bound connections kept to the server (HTTP/2 multiplexes requests on
    /// each; HTTP/1.1 sends one at a time on each).
    #[arg(long, env = "JWT_PROXY_CONNECTIONS",
          default_value_t = SidecarConfig::DEFAULT_CONNECTIONS)]
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
    #[arg(long, env = "JWT_PROXY_TTL", default_value_t = DEFAULT_TTL_SECS)]
    ttl: u64,
    /// HTTP version to offer the server by ALPN.
    #[arg(long, env = "JWT_PROXY_HTTP", value_enum, default_value_t = Http::Auto)]
    http: Http,
}

/// `--claims` as given: JSON text or `@file` on the command line and in
/// the environment, a TOML table in the --config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum ClaimsArg {
    Text(String),
    Table(Map<String, Value>),
}

impl std::str::FromStr for ClaimsArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ClaimsArg::Text(s.to_owned()))
    }
}

impl ClaimsArg {
    fn object(&self) -> Result<Map<String, Value>, String> {
        let map = match self {
            ClaimsArg::Text(t) => match read_claims(t)? {
                Value::Object(m) => m,
                _ => return Err("--claims must be a JSON object".into()),
            },
            ClaimsArg::Table(m) => m.clone(),
        };
        if let Some(k) = map.keys().find(|k| REGISTERED.contains(&k.as_str())) {
            return Err(format!("--claims: the sidecar sets {k:?} itself"));
        }
        Ok(map)
    }
}

pub async fn run(a: ProxyArgs, matches: &ArgMatches) -> Result<ExitCode, String> {
    let file = match &a.config {
        Some(p) => Some(ConfigFile::read(p).map_err(|e| e.to_string())?),
        None => a.profile.enrolled()?,
    };
    let s: ProxySettings = jose_binding_settings::layer(a.settings, matches, file.as_ref())
        .map_err(|e| e.to_string())?;
    let claims = s.claims.object()?;
    let claims_header = HeaderName::try_from(s.claims_header.to_ascii_lowercase())
        .map_err(|_| format!("--claims-header {:?} is not a header name", s.claims_header))?;
    if s.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let (target, mut setup) = s.conn.setup(s.http).await?;
    setup.audience = s.audience.clone();
    setup.ttl_secs = s.ttl;
    let mut config = SidecarConfig::new(target.clone(), setup);
    config.form = s.form;
    config.claims = claims;
    config.claims_header = claims_header;
    config.connections = s.connections;
    config.allow_hosts = s.allow_hosts.clone();
    let listener = Listener::bind(&s.listen, s.allow_remote)
        .await
        .map_err(|e| e.to_string())?;
    if s.allow_remote {
        tracing::warn!("--allow-remote: anyone who reaches the listener acts as this client");
    }
    tracing::info!(
        listen = %listener.describe(),
        server = %target.authority,
        form = s.form.as_str(),
        connections = s.connections,
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

#[cfg(test)]
mod tests {
    use super::*;
    use jose_binding_settings::{declared, undocumented};

    /// docs/SIDECAR.md's table names each setting's flag, env var, config
    /// key and default as the declaration does.
    #[test]
    fn every_setting_has_an_env_var_a_config_key_and_a_row_in_the_docs() {
        let docs = include_str!("../../docs/SIDECAR.md");
        let settings = declared::<ProxySettings>();
        assert!(settings.len() > 15, "{settings:?}");
        assert_eq!(undocumented(&settings, docs, true), Vec::<String>::new());
        assert_eq!(
            undocumented(&declared::<ProxyArgs>(), docs, false),
            Vec::<String>::new()
        );
    }
}
