//! `jwt-server serve`: load the certificate and keystore, serve the echo
//! app (or, with `--upstream`, the gateway) behind the binding until Ctrl-C
//! or SIGTERM (which drains first), reload the keystore, the certificate
//! and its key on change.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jose_binding::echo::EchoApp;
use jose_binding::enroll::Enrolment;
use jose_binding::gateway::Gateway;
use jose_binding::keystore::{KeystoreHandle, KeystoreLock};
use jose_binding::layer::{Binding, Layer};
use jose_binding::server::{self, FrontendListener};
use jose_binding::status::{serve_status, Readiness, RenderMetrics};
use jose_binding::tls::{CertSummary, ReloadableCert};
use jose_binding::{tls, Form, Keystore};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::cli::{Global, ListenAddr, RouteSpec, ServeSettings};
use crate::config::{settings, Settings};

pub(crate) fn missing_hint(what: &str, path: &Path) -> String {
    if path.starts_with("fixtures") {
        format!(
            "{what} {} not found: --dev uses the repository's fixtures, so run from the repository root, or pass --{what}",
            path.display()
        )
    } else {
        format!(
            "{what} {} not found: `sudo jwt-server init --san HOST` makes a certificate, its key and an empty keystore there (or point --{what} at your own)",
            path.display()
        )
    }
}

pub(crate) fn run_server(
    g: &Global,
    s: &ServeSettings,
    route_flags: Vec<RouteSpec>,
) -> Result<(), String> {
    let s = settings(g, s)?;
    let config_file = g.config.clone();
    let mut files = vec![("keystore", &s.keystore)];
    if s.frontend.is_none() {
        files.extend([("cert", &s.cert), ("key", &s.key)]);
    }
    for (what, p) in files {
        if !p.exists() {
            return Err(missing_hint(what, p));
        }
    }
    // Before anything records: the handles taken from here on are the
    // exporter's. Without a status listener nobody could read them, so
    // nothing is recorded.
    let metrics = match s.status_listen {
        Some(_) => Some(install_metrics()?),
        None => None,
    };
    let tls = match &s.frontend {
        Some(_) => None,
        None => {
            let certified = tls::load_certified_key(&s.cert, &s.key).map_err(|e| e.to_string())?;
            let certificate = ReloadableCert::new(certified);
            let config =
                tls::server_config_with_resolver(certificate.clone()).map_err(|e| e.to_string())?;
            Some((Arc::new(config), certificate))
        }
    };
    let keystore = Keystore::load(&s.keystore).map_err(|e| e.to_string())?;
    warn_if_readable(&s.keystore);
    let handle = KeystoreHandle::new(keystore);
    let binding = Binding::new(handle.clone(), s.policy.clone());
    // Every server checks an enrolled key (GET /v1/enroll); only one
    // started with --enroll enrols.
    let enrolment = match s.enroll {
        false => Enrolment::proof_only(handle.clone(), binding.policy.clone()),
        true if s.dev_keystore => {
            return Err("--enroll writes the keystore, and --dev's is the repository's test keystore: pass --keystore FILE".into())
        }
        true => {
            // Enrolment writes the keystore: find out now if it cannot.
            KeystoreLock::acquire(&s.keystore).map_err(|e| {
                format!(
                    "--enroll: cannot lock {} for writing ({e}); the server must be able to write its keystore's directory",
                    s.keystore.display()
                )
            })?;
            let e = Enrolment::new(handle.clone(), s.keystore.clone(), binding.policy.clone());
            match &s.enroll_client_url {
                Some(url) => e
                    .with_client_url(url)
                    .map_err(|e| format!("--enroll-client-url {url:?}: {e}"))?,
                None => e,
            }
        }
    };
    let baseline = match &s.baseline_token_file {
        Some(p) => {
            let token = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("--baseline-token-file {}: {e}", p.display()))?,
            );
            let token = zeroize::Zeroizing::new(token.trim().as_bytes().to_vec());
            if token.len() < 16 {
                return Err("--baseline-token-file: use a token of at least 16 characters".into());
            }
            Some(token)
        }
        None => None,
    };
    // Connections are served on threads of their own (--worker-threads);
    // this runtime accepts, and runs the status listener and the reloads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        match s.gateway.clone() {
            Some(config) => {
                let gateway = match &baseline {
                    Some(t) => {
                        tracing::warn!("the static baseline token is accepted in place of a bound token: for benchmarks only");
                        Gateway::with_baseline(config, t)
                    }
                    None => Gateway::new(config),
                }
                .map_err(|e| e.to_string())?;
                let app = gateway.service(&binding.layer());
                if let Some(path) = config_file {
                    tokio::spawn(jose_binding::reload::watch_file(
                        path,
                        Duration::from_secs(1),
                        reload_routes(gateway.clone(), route_flags),
                    ));
                }
                let app = enrolment.layer().layer(app);
                run(s, tls, binding, handle, app, Some(gateway), metrics).await
            }
            None => {
                let mut app = EchoApp::new(&binding.layer());
                if let Some(t) = &baseline {
                    tracing::warn!("POST /v1/baseline is enabled (static bearer token, no binding): for benchmarks only");
                    app = app.with_baseline(t);
                }
                let app = enrolment.layer().layer(app);
                run(s, tls, binding, handle, app, None, metrics).await
            }
        }
    })
}

/// Listens and serves `app` until a shutdown signal, with the keystore and
/// the certificate watched and the status listener beside it.
#[allow(clippy::too_many_arguments)]
async fn run<S: server::App>(
    s: Settings,
    tls: Option<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>)>,
    binding: Binding,
    handle: KeystoreHandle,
    app: S,
    gateway: Option<Gateway>,
    metrics: Option<PrometheusHandle>,
) -> Result<(), String> {
    let (listener, local) = match &s.listen {
        ListenAddr::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = l.local_addr().map_err(|e| e.to_string())?.to_string();
            (FrontendListener::Tcp(l), local)
        }
        ListenAddr::Unix(path) => {
            let l = FrontendListener::bind_unix(path, s.socket_mode)
                .map_err(|e| format!("{e} ({})", e.code()))?;
            (l, s.listen.to_string())
        }
    };
    // Before "ready": from here on SIGHUP reloads instead of ending the
    // process (its default action). A change is looked for every second
    // (a stat of each file), so it is in force within 2 s.
    let reloader = tokio::spawn(jose_binding::reload::watch(
        handle.clone(),
        s.keystore.clone(),
        Duration::from_secs(1),
    ));
    let cert_reloader = tls.as_ref().map(|(_, certificate)| {
        tokio::spawn(jose_binding::reload::watch_certificate(
            certificate.clone(),
            s.cert.clone(),
            s.key.clone(),
            Duration::from_secs(1),
        ))
    });
    let readiness = Arc::new(match &gateway {
        Some(gw) => gw.readiness(handle.clone()),
        None => Readiness::new(handle.clone()),
    });
    // Also before "ready": a SIGTERM from here on drains rather than kills.
    let shutdown = drain_on_signal(readiness.clone(), s.drain)?;
    let status = match (s.status_listen, metrics) {
        (Some(addr), Some(metrics)) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (--status-listen): {e}"))?;
            tracing::info!(status_listen = %l.local_addr().map_err(|e| e.to_string())?, "status listener ready: GET /healthz, GET /readyz, GET /metrics");
            // Histogram samples wait in a buffer until upkeep (or a scrape)
            // folds them into the buckets: once a second keeps it small
            // under any load, scraped or not.
            let upkeep = metrics.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            let render: RenderMetrics = Arc::new(move || metrics.render());
            Some(tokio::spawn(serve_status(
                l,
                readiness,
                Some(render),
                std::future::pending(),
            )))
        }
        _ => None,
    };
    if s.dev_cert {
        tracing::warn!(cert = %s.cert.display(), key = %s.key.display(), "--dev: serving with the repository's test certificate, whose private key is published; anyone can impersonate this server. Never use --dev in production");
    }
    if s.dev_keystore {
        tracing::warn!(keystore = %s.keystore.display(), "--dev: the repository's test keystore is in use; its client keys are published");
    }
    match tls {
        Some((tls_config, certificate)) => {
            let leaf = certificate.current();
            let summary = leaf.cert.first().and_then(|c| CertSummary::of(c));
            tracing::info!(
                listen = %local,
                cert = %s.cert.display(),
                subject = summary.as_ref().map(|c| c.subject.as_str()).unwrap_or("?"),
                not_after = summary.as_ref().map(|c| c.not_after.as_str()).unwrap_or("?"),
                audience = %s.policy.audience,
                forms = ?s.policy.forms.iter().map(Form::as_str).collect::<Vec<_>>(),
                clients = handle.snapshot().len(),
                keystore = %s.keystore.display(),
                enroll = s.enroll,
                routes = ?gateway.as_ref().map(describe_routes),
                "jwt-server ready (TLS 1.3 only)"
            );
            let FrontendListener::Tcp(listener) = listener else {
                return Err("a server that terminates TLS listens on HOST:PORT".into());
            };
            server::serve(listener, tls_config, binding, app, s.opts, shutdown).await;
        }
        None => {
            let frontend = s.frontend.clone().unwrap_or_default();
            tracing::info!(
                listen = %local,
                frontend_from = ?frontend.from.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                audience = %s.policy.audience,
                forms = ?s.policy.forms.iter().map(Form::as_str).collect::<Vec<_>>(),
                clients = handle.snapshot().len(),
                keystore = %s.keystore.display(),
                enroll = s.enroll,
                routes = ?gateway.as_ref().map(describe_routes),
                "jwt-server ready (behind a TLS-terminating frontend: plain HTTP from it only)"
            );
            server::serve_frontend(listener, binding, app, s.opts, frontend, shutdown).await;
        }
    }
    reloader.abort();
    if let Some(c) = cert_reloader {
        c.abort();
    }
    if let Some(st) = status {
        st.abort();
    }
    tracing::info!("jwt-server stopped");
    Ok(())
}

/// Resolves when serving should stop, with both signals caught from this
/// call on. SIGTERM (how an orchestrator or systemd stops a replica) first
/// drains: `/readyz` turns 503 at once while new connections are still
/// served for `drain`, so the balancer sees it and sends them elsewhere; a
/// second SIGTERM ends the wait. Ctrl-C (SIGINT, a person at a terminal)
/// stops at once. Either way the accept loop then stops and in-flight
/// requests finish within the grace period.
fn drain_on_signal(
    readiness: Arc<Readiness>,
    drain: Duration,
) -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let caught = |kind, name| signal(kind).map_err(|e| format!("cannot catch {name}: {e}"));
    let mut term = caught(SignalKind::terminate(), "SIGTERM")?;
    let mut int = caught(SignalKind::interrupt(), "SIGINT")?;
    Ok(async move {
        let draining = tokio::select! {
            _ = term.recv() => !drain.is_zero(),
            _ = int.recv() => false,
        };
        readiness.drain();
        if draining {
            tracing::info!(
                drain_secs = drain.as_secs(),
                "SIGTERM: draining; /readyz answers 503 and new connections are still served until the drain ends (a second SIGTERM ends it now)"
            );
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = term.recv() => tracing::info!("second SIGTERM: drain cut short"),
                _ = int.recv() => {}
            }
        }
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
    })
}

/// The Prometheus recorder for the whole process, with bucketed histograms
/// for every `_seconds` metric (the exporter's default would be summaries,
/// which cannot be added up across replicas).
fn install_metrics() -> Result<PrometheusHandle, String> {
    const BUCKETS: &[f64] = &[
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("metrics: {e}"))?;
    jose_binding::metrics::describe();
    jose_binding::metrics::build_info(env!("CARGO_PKG_VERSION"));
    Ok(handle)
}

pub(crate) fn warn_if_readable(path: &Path) {
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

/// `PREFIX -> URL` for each route in force, longest prefix first.
fn describe_routes(gateway: &Gateway) -> Vec<String> {
    gateway
        .routes()
        .iter()
        .map(|r| format!("{} -> {}", r.prefix, r.upstream))
        .collect()
}

/// What a change of the --config file does in gateway mode: its
/// `[[routes]]` (with `flags`' routes after them) are put in force, or,
/// if the file or a route is broken, the routes in force stay. Other
/// settings in the file take effect at the next start.
fn reload_routes(gateway: Gateway, flags: Vec<RouteSpec>) -> impl FnMut(&Path, bool) + Send {
    #[derive(serde::Deserialize)]
    struct RoutesOnly {
        #[serde(default)]
        routes: Vec<RouteSpec>,
    }
    move |path, forced| {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                jose_binding::keystore::toml_edit::de::from_str::<RoutesOnly>(&text)
                    .map_err(|_| "not TOML, or a [[routes]] table that does not parse".to_owned())
            })
            .and_then(|file| {
                let specs: Vec<RouteSpec> = file.routes.into_iter().chain(flags.clone()).collect();
                crate::config::routes(&specs)
            })
            .and_then(|routes| gateway.set_routes(routes).map_err(|e| e.to_string()));
        match read {
            Ok(()) => tracing::info!(
                config = %path.display(),
                sighup = forced,
                routes = ?describe_routes(&gateway),
                "routes reloaded"
            ),
            Err(e) => tracing::error!(
                config = %path.display(),
                error = %e,
                "routes not reloaded: the routes in force stay"
            ),
        }
    }
}
