//! The status listener (`--status-listen`): plain HTTP on an address the
//! operator chooses, for load balancers and orchestrators, in every mode.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the keystore holds a client, the server is
//!   not draining and (for a gateway) the upstream accepts a connection;
//!   503 with the reason otherwise. An upstream is probed at most once a
//!   second, however often `/readyz` is asked.
//! - `GET /metrics`: what the metrics renderer given to [`serve_status`]
//!   returns (the Prometheus text format), when one is given.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::keys::keystore::KeystoreHandle;

/// Connections the status listener serves at once; more wait in the
/// kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why the server is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReady {
    /// The keystore has no client, so no request could be accepted.
    KeystoreEmpty,
    /// The last connection attempt to the upstream (at most a second old)
    /// failed.
    UpstreamUnreachable,
    /// The server is shutting down: it still serves, but a balancer should
    /// send new connections elsewhere.
    Draining,
}

impl NotReady {
    /// The stable code `/readyz` answers with.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::KeystoreEmpty => "keystore_empty",
            NotReady::UpstreamUnreachable => "upstream_unreachable",
            NotReady::Draining => "draining",
        }
    }
}

/// One connection attempt to an upstream: true if it connected.
pub(crate) type Probe = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What `/readyz` checks, with the last upstream probe cached.
pub struct Readiness {
    keystore: KeystoreHandle,
    draining: AtomicBool,
    upstream: Option<Probe>,
    last_probe: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Readiness of a server with the clients of `keystore`.
    pub fn new(keystore: KeystoreHandle) -> Self {
        Readiness {
            keystore,
            draining: AtomicBool::new(false),
            upstream: None,
            last_probe: Mutex::new(None),
        }
    }

    /// Also requires the upstream to accept a connection.
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn with_probe(mut self, probe: Probe) -> Self {
        self.upstream = Some(probe);
        self
    }

    /// From now on `/readyz` answers 503 `draining`; it never turns back.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready when not draining, the keystore has a client and any upstream
    /// answered a connection attempt (made at most once a second).
    pub async fn check(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        if self.keystore.snapshot().is_empty() {
            return Err(NotReady::KeystoreEmpty);
        }
        let Some(probe) = &self.upstream else {
            return Ok(());
        };
        let cached = match self.last_probe.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        let up = match cached {
            Some((at, up)) if at.elapsed() < PROBE_EVERY => up,
            _ => {
                let up = probe().await;
                if let Ok(mut g) = self.last_probe.lock() {
                    *g = Some((Instant::now(), up));
                }
                up
            }
        };
        if up {
            Ok(())
        } else {
            Err(NotReady::UpstreamUnreachable)
        }
    }
}

/// Renders the metrics for `GET /metrics` (the Prometheus text format).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/healthz`, `/readyz` and (with `metrics`) `/metrics` until
/// `shutdown` resolves.
pub async fn serve_status(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: Option<RenderMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let tcp = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let readiness = readiness.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&readiness, metrics.as_ref(), &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        });
    }
}

async fn answer(
    readiness: &Readiness,
    metrics: Option<&RenderMetrics>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    // The exposition format's content type (Prometheus text format 0.0.4).
    const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
    let (status, body, content_type) = match (req.method(), req.uri().path(), metrics) {
        (&Method::GET, "/healthz", _) => (StatusCode::OK, r#"{"status":"ok"}"#.to_owned(), JSON),
        (&Method::GET, "/readyz", _) => match readiness.check().await {
            Ok(()) => (StatusCode::OK, r#"{"status":"ready"}"#.to_owned(), JSON),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(r#"{{"status":"not_ready","reason":"{}"}}"#, why.as_str()),
                JSON,
            ),
        },
        (&Method::GET, "/metrics", Some(render)) => (StatusCode::OK, render(), PROMETHEUS),
        (_, "/healthz" | "/readyz", _) | (_, "/metrics", Some(_)) => (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method_not_allowed"}"#.to_owned(),
            JSON,
        ),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found"}"#.to_owned(),
            JSON,
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
