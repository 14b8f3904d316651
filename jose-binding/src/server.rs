//! Serving: TLS 1.3 accept loop, EKM capture, the binding layer mounted on
//! an application service, HTTP/1.1 or HTTP/2 by ALPN, limits, and graceful
//! shutdown. Also the reference application of PROTOCOL.md §6.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::{Binding, BindingLayer, Outcome};
use crate::tls;
use crate::verifier::Verified;

pub type Body = Full<Bytes>;

/// Limits of the serving loop.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones are closed on accept.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to send a complete HTTP/1.1 request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// A connection with no bytes read or written for this long is closed:
    /// hyper's header timeout does not cover the wait between keep-alive
    /// requests, so without it idle clients could hold every slot.
    pub idle_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 128,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// The future of an application service: boxed, so any handler fits.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Builds the application service of one connection around its binding layer.
pub trait MakeApp: Send + Sync + 'static {
    type Service: Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future = AppFuture,
        > + Clone
        + Send
        + 'static;
    fn make(&self, binding: BindingLayer, peer: SocketAddr) -> Self::Service;
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish
/// (up to `shutdown_grace`).
pub async fn serve<M: MakeApp>(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    binding: Binding,
    app: M,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls_config);
    let app = Arc::new(app);
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_header_list_size(opts.max_header_bytes as u32);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = opts.max_connections, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let binding = binding.clone();
        let app = app.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = opts.handshake_timeout;
        let idle_timeout = opts.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let (_, conn) = stream.get_ref();
            let ekm = match tls::export_ekm(conn) {
                Ok(ekm) => ekm,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "no EKM; closing");
                    return;
                }
            };
            let h2 = conn.alpn_protocol() == Some(tls::ALPN_H2);
            tracing::debug!(%peer, ekm_fp = %ekm.fingerprint(), h2, "connection bound");
            let svc = app.make(binding.layer_for(ekm), peer);
            let http = if h2 {
                http.http2_only()
            } else {
                http.http1_only()
            };
            let activity = Activity::new(stream);
            let last = activity.clock();
            let conn = http.serve_connection(TokioIo::new(activity), TowerToHyperService::new(svc));
            tokio::select! {
                ended = watcher.watch(conn) => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = last.idle_for(idle_timeout) => {
                    tracing::debug!(%peer, "idle timeout; closing the connection");
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; dropping remaining connections")
        }
    }
}

/// Time of the last byte read or written on a connection.
#[derive(Clone)]
struct IdleClock {
    base: Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl IdleClock {
    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last =
                Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let quiet = self.base.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream that records when bytes last moved, for the idle timeout.
    struct Activity<S> {
        #[pin]
        inner: S,
        clock: IdleClock,
    }
}

impl<S> Activity<S> {
    fn new(inner: S) -> Self {
        Activity {
            inner,
            clock: IdleClock {
                base: Instant::now(),
                last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            },
        }
    }

    fn clock(&self) -> IdleClock {
        self.clock.clone()
    }
}

impl<S: tokio::io::AsyncRead> tokio::io::AsyncRead for Activity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.touch();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Activity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, data);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.clock.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.clock.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The reference application (§6): `POST /v1/claims` behind the binding,
/// `GET /healthz` open, everything else 404. Logs one line per request.
///
/// For benchmarks only, [`ReferenceApp::with_baseline`] adds
/// `POST /v1/baseline`: the same stack with the binding replaced by a
/// constant-time compare against one static bearer token, so load runs can
/// measure what binding costs. Off unless configured.
#[derive(Clone, Default)]
pub struct ReferenceApp {
    baseline: Option<Arc<zeroize::Zeroizing<Vec<u8>>>>,
}

impl std::fmt::Debug for ReferenceApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceApp")
            .field("baseline", &self.baseline.is_some())
            .finish()
    }
}

impl ReferenceApp {
    /// Enables `POST /v1/baseline` with this static bearer token.
    pub fn with_baseline(token: &[u8]) -> Self {
        ReferenceApp {
            baseline: Some(Arc::new(zeroize::Zeroizing::new(token.to_vec()))),
        }
    }
}

impl MakeApp for ReferenceApp {
    type Service = ReferenceService;
    fn make(&self, binding: BindingLayer, peer: SocketAddr) -> ReferenceService {
        ReferenceService {
            claims: binding.layer(EchoClaims),
            baseline: self.baseline.clone(),
            peer,
        }
    }
}

#[derive(Clone)]
pub struct ReferenceService {
    claims: crate::layer::BindingService<EchoClaims>,
    baseline: Option<Arc<zeroize::Zeroizing<Vec<u8>>>>,
    peer: SocketAddr,
}

impl std::fmt::Debug for ReferenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceService")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The claims the baseline route echoes: the size of a `jwt-client bench` token's.
const BASELINE_CLAIMS: &str = r#"{"iss":"baseline","aud":"localhost","iat":1767225600,"exp":1767225660,"jti":"AAAAAAAAAAAAAAAAAAAAAA","role":"bench"}"#;

/// The baseline route: a static bearer token compared in constant time.
fn baseline_answer(expected: &[u8], headers: &http::HeaderMap) -> Response<Body> {
    use subtle::ConstantTimeEq;
    let ok = match crate::layer::bearer_token(headers) {
        Ok(t) => bool::from(t.as_bytes().ct_eq(expected)),
        Err(_) => false,
    };
    let mut resp = if ok {
        // The same work as the echo route after verification: the echo of a
        // claims set of the size a bound token carries, so the comparison
        // isolates the binding.
        json(
            StatusCode::OK,
            echo_body("baseline", "static", BASELINE_CLAIMS),
        )
    } else {
        crate::layer::unauthorized(crate::error::Rejection::new(
            crate::ErrorCode::BadSignature,
            "not the static baseline token",
        ))
    };
    resp.extensions_mut().insert(Outcome {
        client_id: None,
        form: None,
        code: (!ok).then_some(crate::ErrorCode::BadSignature),
    });
    resp
}

impl Service<Request<Incoming>> for ReferenceService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let peer = self.peer;
        /// The claims route answers later; every other route at once.
        enum Answer<F> {
            Later(F),
            Now(Response<Body>),
        }
        let answer = match (req.method(), req.uri().path(), &self.baseline) {
            (&Method::POST, "/v1/claims", _) => Answer::Later(self.claims.call(req.map(|_| ()))),
            (&Method::POST, "/v1/baseline", Some(expected)) => {
                Answer::Now(baseline_answer(expected, req.headers()))
            }
            (&Method::GET, "/healthz", _) => {
                Answer::Now(json(StatusCode::OK, r#"{"status":"ok"}"#))
            }
            (_, "/v1/claims" | "/healthz", _) => Answer::Now(json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method_not_allowed"}"#,
            )),
            _ => Answer::Now(json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#)),
        };
        Box::pin(async move {
            let resp = match answer {
                Answer::Later(f) => f.await?,
                Answer::Now(resp) => resp,
            };
            log_request(peer, &method, &path, &resp, start.elapsed());
            Ok(resp)
        })
    }
}

fn log_request(
    peer: SocketAddr,
    method: &Method,
    path: &str,
    resp: &Response<Body>,
    latency: Duration,
) {
    let outcome = resp.extensions().get::<Outcome>();
    let client = outcome
        .and_then(|o| o.client_id.as_ref())
        .map(|c| c.as_str())
        .unwrap_or("-");
    let form = outcome
        .and_then(|o| o.form)
        .map(|f| f.as_str())
        .unwrap_or("-");
    let code = match outcome {
        Some(Outcome { code: Some(c), .. }) => c.as_str(),
        Some(_) => "ok",
        None => "-",
    };
    tracing::info!(
        target: "jose_binding::access",
        %peer,
        %method,
        path,
        status = resp.status().as_u16(),
        %client,
        %form,
        outcome = %code,
        latency_us = latency.as_micros() as u64,
    );
}

/// The echo handler: `{"client_id", "form", "claims"}` of the verified token.
#[derive(Debug, Clone, Copy)]
pub struct EchoClaims;

impl Service<Request<()>> for EchoClaims {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let resp = match req.extensions().get::<Verified>() {
            Some(v) => json(
                StatusCode::OK,
                echo_body(v.client_id.as_str(), v.form.as_str(), v.claims.as_json()),
            ),
            // Unreachable behind the layer; never a 5xx for client input.
            None => json(StatusCode::UNAUTHORIZED, r#"{"error":"missing_token"}"#),
        };
        std::future::ready(Ok(resp))
    }
}

/// `{"client_id", "form", "claims"}` (§6), with the verified claims text
/// written as it is: it passed the strict parse, so it is one JSON object.
fn echo_body(client_id: &str, form: &str, claims_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + client_id.len() + form.len() + claims_json.len());
    out.extend_from_slice(br#"{"client_id":"#);
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, client_id);
    out.extend_from_slice(br#","form":"#);
    let _ = serde_json::to_writer(&mut out, form);
    out.extend_from_slice(br#","claims":"#);
    out.extend_from_slice(claims_json.as_bytes());
    out.push(b'}');
    out
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
