//! What serving needs, from the settings cli.rs declares (and
//! jose_binding_settings layers: flag, env var, --config file, default).
//!
//! The certificate, its key and the keystore have no default: only `--dev`
//! falls back to the repository's fixtures, whose private keys are public.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jose_binding::gateway::{BadUpstream, GatewayConfig, Route, Upstream};
use jose_binding::server::ServerOptions;
use jose_binding::{tls, FormSet, IpNet, Policy};

use crate::cli::{Frontend, Global, ListenAddr, RouteSpec, ServeSettings};
use jose_binding::server::FrontendOptions;

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

/// The keystore for serving and for every `keys` command: `flag` (the
/// command's own --keystore or JWT_KEYSTORE), else the server's keystore
/// setting (flag, env var or --config file), else with --dev the fixture's.
/// Returns the path and whether it is the fixture.
pub(crate) fn keystore_path(
    flag: Option<&Path>,
    g: &Global,
    s: &ServeSettings,
) -> Result<(PathBuf, bool), String> {
    if let Some(p) = flag.or(s.keystore.as_deref()) {
        return Ok((p.to_owned(), false));
    }
    if g.dev {
        return Ok((DEV_KEYSTORE.into(), true));
    }
    Err(NO_KEYSTORE.into())
}

/// `--audience`, else the first DNS name of the certificate at `cert`
/// (what clients dial, and so name in `aud`), else `localhost`.
pub(crate) fn audience(s: &ServeSettings, cert: Option<&Path>) -> String {
    if let Some(a) = &s.audience {
        return a.clone();
    }
    cert.and_then(|p| tls::load_certs(p).ok())
        .and_then(|chain| chain.first().map(tls::dns_names))
        .and_then(|names| names.into_iter().find(|n| !n.starts_with('*')))
        .unwrap_or_else(|| Policy::default().audience)
}

/// Settings after flags, environment, file and defaults are merged.
pub(crate) struct Settings {
    pub(crate) listen: ListenAddr,
    /// The mode of a Unix socket `listen` behind a frontend.
    pub(crate) socket_mode: u32,
    /// The certificate and key, unless a frontend terminates TLS.
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) keystore: PathBuf,
    /// Which of cert+key and keystore are the published fixtures (`--dev`).
    pub(crate) dev_cert: bool,
    /// Behind a TLS-terminating frontend (`--frontend`): no certificate;
    /// plain HTTP from the frontends only.
    pub(crate) frontend: Option<FrontendOptions>,
    pub(crate) dev_keystore: bool,
    pub(crate) baseline_token_file: Option<PathBuf>,
    pub(crate) policy: Policy,
    pub(crate) opts: ServerOptions,
    /// Set when serving as a gateway (`--upstream`).
    pub(crate) gateway: Option<GatewayConfig>,
    pub(crate) status_listen: Option<SocketAddr>,
    /// How long SIGTERM keeps serving with `/readyz` at 503.
    pub(crate) drain: Duration,
    /// Serve `POST /v1/enroll` (`--enroll`).
    pub(crate) enroll: bool,
    /// The URL enrolled clients are told to use (`--enroll-client-url`).
    pub(crate) enroll_client_url: Option<String>,
}

/// What serving needs, from the layered settings; checks what a type
/// alone cannot (non-zero limits, a cert with its key, headers that
/// differ).
pub(crate) fn settings(g: &Global, s: &ServeSettings) -> Result<Settings, String> {
    let forms: FormSet = s.forms.iter().copied().collect();
    if forms == FormSet::NONE {
        return Err("--forms names no form".into());
    }
    let gateway = gateway(s)?;
    if s.worker_threads == Some(0) {
        return Err("--worker-threads must be at least 1".into());
    }
    let mut opts = ServerOptions::default();
    opts.max_connections = s.max_connections;
    opts.max_handshakes = s.max_handshakes;
    opts.max_pending_per_source = s.max_pending_per_source;
    opts.eviction_min_age = Duration::from_millis(s.eviction_min_age_ms);
    opts.handshake_timeout = secs(s.handshake_timeout_secs);
    opts.auth_timeout = secs(s.auth_timeout_secs);
    opts.header_read_timeout = secs(s.header_read_timeout_secs);
    opts.idle_timeout = secs(s.idle_timeout_secs);
    opts.max_concurrent_streams = s.max_streams;
    opts.max_send_buf_size = s.max_send_buf_bytes;
    opts.refusal_log_per_sec = s.refusal_log_per_sec;
    opts.metrics_client_labels = s.metrics_client_labels;
    opts.max_connection_age = s.max_connection_age_secs.map(secs);
    opts.connection_threads = s
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    opts.request_id_from = cidrs("--trusted-proxies", &s.trusted_proxies)?;
    opts.proxy_protocol_from = match (s.proxy_protocol, s.proxy_protocol_from.is_empty()) {
        (true, false) => cidrs("--proxy-protocol-from", &s.proxy_protocol_from)?,
        (false, true) => Vec::new(),
        (true, true) => {
            return Err(
                "--proxy-protocol needs --proxy-protocol-from (the balancers' addresses)".into(),
            )
        }
        (false, false) => return Err("--proxy-protocol-from is for --proxy-protocol".into()),
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
    let frontend = match s.frontend {
        Frontend::None => None,
        Frontend::Haproxy => {
            if s.cert.is_some() || s.key.is_some() {
                return Err("--cert and --key are for a server that terminates TLS; behind --frontend the frontend holds the certificate".into());
            }
            if s.proxy_protocol {
                return Err("--proxy-protocol is for a TCP balancer; behind --frontend the client address comes from X-Forwarded-For".into());
            }
            if s.frontend_max_connections == 0 {
                return Err("--frontend-max-connections must be at least 1".into());
            }
            let mut f = FrontendOptions::default();
            f.from = cidrs("--frontend-from", &s.frontend_from)?;
            f.max_connections = s.frontend_max_connections;
            Some(f)
        }
    };
    if matches!(s.listen, ListenAddr::Unix(_)) && frontend.is_none() {
        return Err(format!(
            "--listen {}: a Unix socket is for --frontend haproxy; a server that terminates TLS \
             listens on HOST:PORT",
            s.listen
        ));
    }
    let (cert, key, dev_cert) = match (s.cert.clone(), s.key.clone()) {
        _ if frontend.is_some() => (PathBuf::new(), PathBuf::new(), false),
        (Some(cert), Some(key)) => (cert, key, false),
        (None, None) if g.dev => (DEV_CERT.into(), DEV_KEY.into(), true),
        (Some(_), None) => {
            return Err("--cert is given but not --key (the certificate's private key)".into())
        }
        (None, Some(_)) => {
            return Err("--key is given but not --cert (the certificate chain)".into())
        }
        (None, None) => return Err(NO_CERT.into()),
    };
    let (keystore, dev_keystore) = keystore_path(None, g, s)?;
    let mut policy = Policy::default();
    policy.audience = audience(s, (!cert.as_os_str().is_empty()).then_some(cert.as_path()));
    policy.forms = forms;
    policy.skew_secs = s.skew_secs;
    policy.max_ttl_secs = s.max_ttl_secs;
    policy.replay_capacity = s.replay_capacity;
    Ok(Settings {
        listen: s.listen.clone(),
        socket_mode: s.frontend_socket_mode,
        cert,
        key,
        keystore,
        dev_cert,
        frontend,
        dev_keystore,
        baseline_token_file: s.baseline_token_file.clone(),
        policy,
        opts,
        gateway,
        status_listen: s.status_listen,
        drain: Duration::from_secs(s.drain_secs),
        enroll: s.enroll,
        enroll_client_url: s.enroll_client_url.clone(),
    })
}

/// A CIDR list (a bare address is its own /32 or /128).
fn cidrs(flag: &str, list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|c| {
            c.trim()
                .parse::<IpNet>()
                .or_else(|_| c.trim().parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{flag}: {c:?} is not a CIDR or address"))
        })
        .collect()
}

/// Whole seconds, at least 1.
fn secs(s: u64) -> Duration {
    Duration::from_secs(s.max(1))
}

/// The gateway's settings, if `--upstream` or a route is set.
fn gateway(s: &ServeSettings) -> Result<Option<GatewayConfig>, String> {
    let routes = routes(&s.routes)?;
    let upstream = match &s.upstream {
        Some(u) => Some(
            u.parse::<Upstream>()
                .map_err(|e: BadUpstream| e.to_string())?,
        ),
        None if routes.is_empty() => return Ok(None),
        None => None,
    };
    let mut g = GatewayConfig::with_routes(routes);
    g.upstream = upstream;
    let https = g
        .upstream
        .iter()
        .chain(g.routes.iter().map(|r| &r.upstream))
        .any(|u| matches!(u, Upstream::Https { .. }));
    match (https, &s.upstream_ca) {
        (true, Some(ca)) => {
            let roots = tls::load_roots(ca).map_err(|e| format!("--upstream-ca: {e}"))?;
            // HTTP/2 if the upstream takes it (gRPC needs it), else 1.1.
            let config = tls::client_config(roots, &[tls::ALPN_H2, tls::ALPN_HTTP11])
                .map_err(|e| format!("--upstream-ca: {e}"))?;
            g.upstream_tls = Some(Arc::new(config));
        }
        (true, None) => return Err("an https:// upstream needs --upstream-ca".into()),
        (false, Some(_)) => return Err("--upstream-ca is for an https:// upstream".into()),
        (false, None) => {}
    }
    if let Some(h) = &s.upstream_host {
        // h2c:// and https:// send it as the request's authority.
        if h.parse::<http::uri::Authority>().is_err() {
            return Err(format!("--upstream-host {h:?}: use HOST or HOST:PORT"));
        }
        g.upstream_host = Some(
            HeaderValue::try_from(h.as_str()).map_err(|_| "--upstream-host: not a header value")?,
        );
    }
    g.public_paths = s.public_paths.clone();
    g.public_websocket_paths = s.public_websocket_paths.clone();
    for (flag, list) in [
        ("--public-path", &g.public_paths),
        ("--public-websocket-path", &g.public_websocket_paths),
    ] {
        if let Some(p) = list.iter().find(|p| !p.starts_with('/')) {
            return Err(format!("{flag} {p:?}: a prefix starts with /"));
        }
    }
    g.forward_token = s.forward_token;
    let header = |n: &str| {
        HeaderName::try_from(n.to_ascii_lowercase())
            .map_err(|_| format!("{n:?} is not a header name"))
    };
    g.identity.client_id = header(&s.client_id_header)?;
    g.identity.form = header(&s.form_header)?;
    g.identity.claims = header(&s.claims_header)?;
    let i = &g.identity;
    if i.client_id == i.form || i.client_id == i.claims || i.form == i.claims {
        return Err("the client id, form and claims headers must differ".into());
    }
    g.trusted_proxies = cidrs("--trusted-proxies", &s.trusted_proxies)?;
    g.connect_timeout = secs(s.upstream_connect_timeout_secs);
    g.response_timeout = secs(s.upstream_response_timeout_secs);
    g.idle_timeout = secs(s.upstream_idle_timeout_secs);
    Ok(Some(g))
}

/// The gateway's routes from their settings, each checked: an upstream
/// that parses, a prefix that starts with `/`, client patterns that are
/// ids or id prefixes.
pub(crate) fn routes(specs: &[RouteSpec]) -> Result<Vec<Route>, String> {
    let mut routes = Vec::with_capacity(specs.len());
    for spec in specs {
        let at = |what: &str| format!("route {:?}: {what}", spec.prefix);
        if !spec.prefix.starts_with('/') {
            return Err(at("a prefix starts with /"));
        }
        let upstream: Upstream = spec
            .upstream
            .parse()
            .map_err(|e: BadUpstream| at(&e.to_string()))?;
        let pattern = |c: &String| match c.strip_suffix('*') {
            Some(prefix) => !prefix.contains('*'),
            None => jose_binding::ClientId::new(c).is_ok(),
        };
        if let Some(bad) = spec.clients.iter().flatten().find(|c| !pattern(c)) {
            return Err(at(&format!(
                "clients: {bad:?} is neither a client id nor an id prefix ending in *"
            )));
        }
        if spec.public && (spec.clients.is_some() || !spec.require_claims.is_empty()) {
            return Err(at(
                "a public route takes no token, so it cannot require clients or claims",
            ));
        }
        let mut route = Route::new(spec.prefix.clone(), upstream);
        route.clients = spec.clients.clone();
        route.require_claims = spec.require_claims.clone();
        route.public = spec.public;
        routes.push(route);
    }
    Ok(routes)
}
