//! Settings: flags, then environment, then the --config file, then the
//! defaults, merged into what serving needs.
//!
//! Relative paths in a --config file are relative to the file's directory.
//! The certificate, its key and the keystore have no default: only `--dev`
//! falls back to the repository's fixtures, whose private keys are public.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jose_binding::gateway::IdentityHeaders;
use jose_binding::gateway::{BadUpstream, Upstream};
use jose_binding::gateway::{GatewayConfig, IpNet};
use jose_binding::keystore::read_settings;
use jose_binding::server::ServerOptions;
use jose_binding::{tls, Form, FormSet, Policy};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The --config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) keystore: Option<PathBuf>,
    pub(crate) audience: Option<String>,
    pub(crate) forms: Option<Vec<String>>,
    pub(crate) skew_secs: Option<u64>,
    pub(crate) max_ttl_secs: Option<u64>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_handshakes: Option<usize>,
    pub(crate) max_pending_per_source: Option<usize>,
    pub(crate) eviction_min_age_ms: Option<u64>,
    pub(crate) handshake_timeout_secs: Option<u64>,
    pub(crate) auth_timeout_secs: Option<u64>,
    pub(crate) header_read_timeout_secs: Option<u64>,
    pub(crate) idle_timeout_secs: Option<u64>,
    pub(crate) max_streams: Option<u32>,
    pub(crate) max_send_buf_bytes: Option<usize>,
    pub(crate) refusal_log_per_sec: Option<u32>,
    pub(crate) replay_capacity: Option<usize>,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) upstream: Option<String>,
    pub(crate) upstream_ca: Option<PathBuf>,
    pub(crate) upstream_host: Option<String>,
    pub(crate) public_paths: Option<Vec<String>>,
    pub(crate) public_websocket_paths: Option<Vec<String>>,
    pub(crate) forward_token: Option<bool>,
    pub(crate) client_id_header: Option<String>,
    pub(crate) form_header: Option<String>,
    pub(crate) claims_header: Option<String>,
    pub(crate) trusted_proxies: Option<Vec<String>>,
    pub(crate) upstream_connect_timeout_secs: Option<u64>,
    pub(crate) upstream_response_timeout_secs: Option<u64>,
    pub(crate) upstream_idle_timeout_secs: Option<u64>,
    pub(crate) status_listen: Option<SocketAddr>,
    pub(crate) baseline_token_file: Option<PathBuf>,
}

/// The fixtures `--dev` serves with. Their private keys are in the
/// repository, so nothing falls back to them without `--dev`.
pub(crate) const DEV_CERT: &str = "fixtures/server.pem";
pub(crate) const DEV_KEY: &str = "fixtures/server.key";
pub(crate) const DEV_KEYSTORE: &str = "fixtures/keystore.toml";

/// What to say when no certificate and key are given.
pub(crate) const NO_CERT: &str = "no TLS certificate and key: pass --cert FILE --key FILE \
(or JWT_CERT and JWT_KEY, or cert and key in --config). For a host of your own, make a pair \
with e.g. `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
-subj /CN=HOST -addext subjectAltName=DNS:HOST -addext basicConstraints=critical,CA:FALSE \
-keyout key.pem -out cert.pem` (clients then trust cert.pem), or a test CA and a localhost \
certificate with `cargo xtask fixtures --dir DIR` in the repository; to try the server out, \
--dev serves the repository's test certificate, whose private key is public";

/// What to say when no keystore is given.
pub(crate) const NO_KEYSTORE: &str = "no keystore: pass --keystore FILE (or JWT_KEYSTORE, or \
keystore in --config FILE / JWT_SERVER_CONFIG); --dev uses the repository's test keystore \
fixtures/keystore.toml";

/// Reads a --config file: TOML, with its relative paths made relative to
/// the file's directory. Errors say where and which setting, never a value.
pub(crate) fn read_config(path: &Path) -> Result<FileConfig, String> {
    let shown = path.display();
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("--config {shown}: {e}"))?,
    );
    let mut file: FileConfig =
        read_settings(&text).map_err(|e| format!("--config {shown}, {e}"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let resolve = |p: &mut Option<PathBuf>| {
        if let Some(p) = p {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    };
    resolve(&mut file.cert);
    resolve(&mut file.key);
    resolve(&mut file.keystore);
    resolve(&mut file.upstream_ca);
    resolve(&mut file.baseline_token_file);
    Ok(file)
}

/// The keystore for serving and for every `keys` command: `flag` (the
/// command's own --keystore or JWT_KEYSTORE), else the top-level
/// --keystore, else the --config file's, else with --dev the fixture's.
/// Returns the path and whether it is the fixture.
pub(crate) fn keystore_path(
    flag: Option<&Path>,
    a: &ServeArgs,
    file: &FileConfig,
) -> Result<(PathBuf, bool), String> {
    if let Some(p) = flag.or(a.keystore.as_deref()).or(file.keystore.as_deref()) {
        return Ok((p.to_owned(), false));
    }
    if a.dev {
        return Ok((DEV_KEYSTORE.into(), true));
    }
    Err(NO_KEYSTORE.into())
}

/// The --config file, or no settings.
pub(crate) fn config_file(a: &ServeArgs) -> Result<FileConfig, String> {
    match &a.config {
        Some(p) => read_config(p),
        None => Ok(FileConfig::default()),
    }
}

/// A setting from the flag (or its env var), else the config file, else
/// the default.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// Settings after flags, environment, file and defaults are merged.
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) keystore: PathBuf,
    /// Which of cert+key and keystore are the published fixtures (`--dev`).
    pub(crate) dev_cert: bool,
    pub(crate) dev_keystore: bool,
    pub(crate) baseline_token_file: Option<PathBuf>,
    pub(crate) policy: Policy,
    pub(crate) opts: ServerOptions,
    /// Runtime worker threads; `None`: one per CPU.
    pub(crate) worker_threads: Option<usize>,
    /// Set when serving as a gateway (`--upstream`).
    pub(crate) gateway: Option<GatewayConfig>,
    pub(crate) status_listen: Option<SocketAddr>,
}

pub(crate) fn settings(a: &ServeArgs) -> Result<Settings, String> {
    let file = config_file(a)?;
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
    let gateway = gateway(a, &file)?;
    let status_listen = a.status_listen.or(file.status_listen);
    let worker_threads = a.worker_threads.or(file.worker_threads);
    if worker_threads == Some(0) {
        return Err("--worker-threads must be at least 1".into());
    }
    if status_listen.is_some() && gateway.is_none() {
        return Err("--status-listen needs --upstream (the gateway)".into());
    }
    let od = ServerOptions::default();
    let mut opts = ServerOptions::default();
    opts.max_connections = pick(a.max_connections, file.max_connections, od.max_connections);
    opts.max_handshakes = pick(a.max_handshakes, file.max_handshakes, od.max_handshakes);
    opts.max_pending_per_source = pick(
        a.max_pending_per_source,
        file.max_pending_per_source,
        od.max_pending_per_source,
    );
    opts.eviction_min_age = a
        .eviction_min_age_ms
        .or(file.eviction_min_age_ms)
        .map(Duration::from_millis)
        .unwrap_or(od.eviction_min_age);
    opts.handshake_timeout = secs(
        a.handshake_timeout_secs,
        file.handshake_timeout_secs,
        od.handshake_timeout,
    );
    opts.auth_timeout = secs(a.auth_timeout_secs, file.auth_timeout_secs, od.auth_timeout);
    opts.header_read_timeout = secs(
        a.header_read_timeout_secs,
        file.header_read_timeout_secs,
        od.header_read_timeout,
    );
    opts.idle_timeout = secs(a.idle_timeout_secs, file.idle_timeout_secs, od.idle_timeout);
    opts.max_concurrent_streams = pick(a.max_streams, file.max_streams, od.max_concurrent_streams);
    opts.max_send_buf_size = pick(
        a.max_send_buf_bytes,
        file.max_send_buf_bytes,
        od.max_send_buf_size,
    );
    opts.refusal_log_per_sec = pick(
        a.refusal_log_per_sec,
        file.refusal_log_per_sec,
        od.refusal_log_per_sec,
    );
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
    let (cert, key, dev_cert) = match (
        a.cert.clone().or(file.cert.clone()),
        a.key.clone().or(file.key.clone()),
    ) {
        (Some(cert), Some(key)) => (cert, key, false),
        (None, None) if a.dev => (DEV_CERT.into(), DEV_KEY.into(), true),
        (Some(_), None) => {
            return Err("--cert is given but not --key (the certificate's private key)".into())
        }
        (None, Some(_)) => {
            return Err("--key is given but not --cert (the certificate chain)".into())
        }
        (None, None) => return Err(NO_CERT.into()),
    };
    let (keystore, dev_keystore) = keystore_path(None, a, &file)?;
    let mut policy = Policy::default();
    policy.audience = a
        .audience
        .clone()
        .or(file.audience)
        .unwrap_or(defaults.audience);
    policy.forms = forms;
    policy.skew_secs = pick(a.skew_secs, file.skew_secs, defaults.skew_secs);
    policy.max_ttl_secs = pick(a.max_ttl_secs, file.max_ttl_secs, defaults.max_ttl_secs);
    policy.replay_capacity = pick(
        a.replay_capacity,
        file.replay_capacity,
        defaults.replay_capacity,
    );
    Ok(Settings {
        listen: a
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
        cert,
        key,
        keystore,
        dev_cert,
        dev_keystore,
        baseline_token_file: a.baseline_token_file.clone().or(file.baseline_token_file),
        policy,
        opts,
        gateway,
        status_listen,
        worker_threads,
    })
}

/// Whole seconds, at least 1, from the flag, else the file, else the default.
fn secs(flag: Option<u64>, file: Option<u64>, default: Duration) -> Duration {
    flag.or(file)
        .map(|s| Duration::from_secs(s.max(1)))
        .unwrap_or(default)
}

/// The gateway's settings, if `--upstream` is set.
fn gateway(a: &ServeArgs, file: &FileConfig) -> Result<Option<GatewayConfig>, String> {
    let Some(upstream) = a.upstream.clone().or(file.upstream.clone()) else {
        return Ok(None);
    };
    let upstream: Upstream = upstream.parse().map_err(|e: BadUpstream| e.to_string())?;
    let mut g = GatewayConfig::new(upstream);
    let ca = a.upstream_ca.clone().or(file.upstream_ca.clone());
    match (&g.upstream, ca) {
        (Upstream::Https { .. }, Some(ca)) => {
            let roots = tls::load_roots(&ca).map_err(|e| format!("--upstream-ca: {e}"))?;
            let config = tls::client_config(roots, &[tls::ALPN_HTTP11])
                .map_err(|e| format!("--upstream-ca: {e}"))?;
            g.upstream_tls = Some(Arc::new(config));
        }
        (Upstream::Https { .. }, None) => {
            return Err("an https:// upstream needs --upstream-ca".into())
        }
        (_, Some(_)) => return Err("--upstream-ca is for an https:// upstream".into()),
        (_, None) => {}
    }
    if let Some(h) = a.upstream_host.clone().or(file.upstream_host.clone()) {
        g.upstream_host =
            Some(HeaderValue::try_from(h).map_err(|_| "--upstream-host: not a header value")?);
    }
    g.public_paths = a
        .public_paths
        .clone()
        .or(file.public_paths.clone())
        .unwrap_or_default();
    g.public_websocket_paths = a
        .public_websocket_paths
        .clone()
        .or(file.public_websocket_paths.clone())
        .unwrap_or_default();
    for (flag, list) in [
        ("--public-path", &g.public_paths),
        ("--public-websocket-path", &g.public_websocket_paths),
    ] {
        if let Some(p) = list.iter().find(|p| !p.starts_with('/')) {
            return Err(format!("{flag} {p:?}: a prefix starts with /"));
        }
    }
    g.forward_token = a.forward_token || file.forward_token.unwrap_or(false);
    let header = |flag: &Option<String>, file: &Option<String>, default: HeaderName| match flag
        .clone()
        .or(file.clone())
    {
        Some(n) => HeaderName::try_from(n.to_ascii_lowercase())
            .map_err(|_| format!("{n:?} is not a header name")),
        None => Ok(default),
    };
    let d = IdentityHeaders::default();
    g.identity.client_id = header(&a.client_id_header, &file.client_id_header, d.client_id)?;
    g.identity.form = header(&a.form_header, &file.form_header, d.form)?;
    g.identity.claims = header(&a.claims_header, &file.claims_header, d.claims)?;
    let i = &g.identity;
    if i.client_id == i.form || i.client_id == i.claims || i.form == i.claims {
        return Err("the client id, form and claims headers must differ".into());
    }
    g.trusted_proxies = a
        .trusted_proxies
        .clone()
        .or(file.trusted_proxies.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            c.trim()
                .parse::<IpNet>()
                .or_else(|_| c.trim().parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("--trusted-proxies: {c:?} is not a CIDR or address"))
        })
        .collect::<Result<_, _>>()?;
    g.connect_timeout = secs(
        a.upstream_connect_timeout_secs,
        file.upstream_connect_timeout_secs,
        g.connect_timeout,
    );
    g.response_timeout = secs(
        a.upstream_response_timeout_secs,
        file.upstream_response_timeout_secs,
        g.response_timeout,
    );
    g.idle_timeout = secs(
        a.upstream_idle_timeout_secs,
        file.upstream_idle_timeout_secs,
        g.idle_timeout,
    );
    Ok(Some(g))
}
