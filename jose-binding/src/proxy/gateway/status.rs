//! The status listener (`--status-listen`): plain HTTP on an address the
//! operator chooses, for load balancers and orchestrators.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the keystore holds a client and the upstream
//!   accepts a connection; 503 with the reason otherwise. The upstream is
//!   probed at most once a second, however often `/readyz` is asked.

use std::convert::Infallible;
use std::future::Future;
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

use super::Gateway;
use crate::keys::keystore::KeystoreHandle;

/// Connections the status listener serves at once; more wait in the
/// kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why the gateway is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReady {
    /// The keystore has no client, so no request could be accepted.
    KeystoreEmpty,
    /// The last connection attempt to the upstream (at most a second old)
    /// failed.
    UpstreamUnreachable,
}

impl NotReady {
    /// The stable code `/readyz` answers with.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::KeystoreEmpty => "keystore_empty",
            NotReady::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// What `/readyz` checks, with the last upstream probe cached.
pub struct Readiness {
    gateway: Gateway,
    keystore: KeystoreHandle,
    last_probe: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Readiness of `gateway` with the clients of `keystore`.
    pub fn new(gateway: Gateway, keystore: KeystoreHandle) -> Self {
        Readiness {
            gateway,
            keystore,
            last_probe: Mutex::new(None),
        }
    }

    /// Ready when the keystore has a client and the upstream answered a
    /// connection attempt; the attempt is made at most once a second.
    pub async fn check(&self) -> Result<(), NotReady> {
        if self.keystore.snapshot().is_empty() {
            return Err(NotReady::KeystoreEmpty);
        }
        let cached = match self.last_probe.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        let up = match cached {
            Some((at, up)) if at.elapsed() < PROBE_EVERY => up,
            _ => {
                let up = self.gateway.probe().await.is_ok();
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

/// Serves `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve_status(
    listener: TcpListener,
    readiness: Arc<Readiness>,
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
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let readiness = readiness.clone();
                async move { Ok::<_, Infallible>(answer(&readiness, &req).await) }
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

async fn answer(readiness: &Readiness, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        (&Method::GET, "/readyz") => match readiness.check().await {
            Ok(()) => (StatusCode::OK, r#"{"status":"ready"}"#.to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(r#"{{"status":"not_ready","reason":"{}"}}"#, why.as_str()),
            ),
        },
        (_, "/healthz" | "/readyz") => (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method_not_allowed"}"#.to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
