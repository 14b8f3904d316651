//! Serving: TLS 1.3 accept loop, EKM capture, the binding layer mounted on
//! an application service, HTTP/1.1 or HTTP/2 by ALPN, limits, and graceful
//! shutdown. Also the reference application of PROTOCOL.md §6.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
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
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;
use tower_service::Service;

use crate::admission::{Admission, Budgets, Refused, Ticket};
use crate::layer::{Binding, BindingLayer, Outcome};
use crate::throttle::{Counters, Dropped, LogBudget};
use crate::tls;
use crate::verifier::Verified;

pub type Body = Full<Bytes>;

/// Limits of the serving loop. The defaults suit a 2-core box serving about
/// a thousand clients; docs/SECURITY.md says what each one stops.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once. When full, the oldest connection that
    /// has not yet presented an accepted token is closed to admit a new one
    /// ([`admission`](crate::admission)); authenticated ones never are.
    pub max_connections: usize,
    /// Connections in the TLS handshake at once.
    pub max_handshakes: usize,
    /// Unauthenticated connections from one source address at once.
    pub max_pending_per_source: usize,
    /// How long an unauthenticated connection is safe from eviction.
    pub eviction_min_age: Duration,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time from accept to the first accepted token; nothing else (PING,
    /// SETTINGS, WINDOW_UPDATE, unauthenticated requests) extends it.
    pub auth_timeout: Duration,
    /// Time a client has to send a complete HTTP/1.1 request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// A connection with no request or response traffic for this long is
    /// closed. Only requests arriving, handlers at work and response bytes
    /// accepted by the peer count: HTTP/2 PING, SETTINGS and WINDOW_UPDATE
    /// frames do not, nor does a response the peer never reads.
    pub idle_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Bytes of response data HTTP/2 buffers per stream for a peer that
    /// does not read (hyper's default is 400 KiB).
    pub max_send_buf_size: usize,
    /// Log lines a second for refused requests and dropped connections;
    /// the rest are counted in a summary line.
    pub refusal_log_per_sec: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let budgets = Budgets::default();
        ServerOptions {
            max_connections: budgets.max_connections,
            max_handshakes: budgets.max_handshakes,
            max_pending_per_source: budgets.max_pending_per_source,
            eviction_min_age: budgets.eviction_min_age,
            handshake_timeout: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 8,
            max_header_bytes: 64 * 1024,
            max_send_buf_size: 64 * 1024,
            refusal_log_per_sec: 10,
        }
    }
}

impl ServerOptions {
    fn budgets(&self) -> Budgets {
        Budgets {
            max_connections: self.max_connections,
            max_handshakes: self.max_handshakes,
            max_pending_per_source: self.max_pending_per_source,
            eviction_min_age: self.eviction_min_age,
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

/// What the accept loop and every connection task share.
struct Shared<M> {
    acceptor: TlsAcceptor,
    binding: Binding,
    app: M,
    /// Protocol chosen by ALPN: one builder each, made once.
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    opts: ServerOptions,
    log: Arc<Log>,
}

/// The counters, and the log budget that refusals and drops share.
struct Log {
    counters: Counters,
    budget: LogBudget,
}

impl<M> Shared<M> {
    /// Counts a connection the server closes, and logs it within the budget.
    fn dropped(&self, peer: SocketAddr, why: Dropped, detail: &dyn std::fmt::Display) {
        self.log.counters.count_dropped(why);
        if self.log.budget.allow() {
            tracing::info!(%peer, reason = why.as_str(), %detail, "connection dropped");
        }
    }
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
    let admission = Admission::new(opts.budgets());
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_header_list_size(opts.max_header_bytes as u32)
        .max_send_buf_size(opts.max_send_buf_size);
    let shared = Arc::new(Shared {
        acceptor: TlsAcceptor::from(tls_config),
        binding,
        app,
        http1: http.clone().http1_only(),
        http2: http.http2_only(),
        log: Arc::new(Log {
            counters: Counters::default(),
            budget: LogBudget::new(opts.refusal_log_per_sec),
        }),
        opts,
    });
    let reporter = tokio::spawn(report_suppressed(shared.clone()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if shared.log.budget.allow() {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        shared.log.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let ticket = match admission.admit(peer.ip()) {
            Ok((ticket, _)) => ticket,
            Err(Refused(budget)) => {
                shared.dropped(peer, Dropped::Refused, &budget.as_str());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        tokio::spawn(serve_connection(shared.clone(), tcp, peer, ticket, watcher));
    }
    drop(listener);
    reporter.abort();
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(shared.opts.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; dropping remaining connections")
        }
    }
}

/// Once a second, if the log budget suppressed anything, one line with how
/// many and the running totals.
async fn report_suppressed<M>(shared: Arc<Shared<M>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let suppressed = shared.log.budget.take_suppressed();
        if suppressed == 0 {
            continue;
        }
        let c = &shared.log.counters;
        let n = |why| c.dropped(why).load(Ordering::Relaxed);
        tracing::warn!(
            suppressed,
            accepted = c.accepted.load(Ordering::Relaxed),
            refused = n(Dropped::Refused),
            evicted = n(Dropped::Evicted),
            handshake = n(Dropped::Handshake),
            auth_deadline = n(Dropped::AuthDeadline),
            idle = n(Dropped::Idle),
            requests_refused = c.requests_refused.load(Ordering::Relaxed),
            "log lines suppressed in the last second; totals since start follow"
        );
    }
}

/// One connection: handshake, then HTTP until the peer leaves, the server
/// shuts down, or a limit closes it.
async fn serve_connection<M: MakeApp>(
    shared: Arc<Shared<M>>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let ticket = Arc::new(ticket);
    let opts = &shared.opts;
    let auth_deadline = tokio::time::Instant::now() + opts.auth_timeout;
    let handshake = tokio::time::timeout(opts.handshake_timeout, shared.acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return shared.dropped(peer, Dropped::Handshake, &e),
            Err(_) => return shared.dropped(peer, Dropped::Handshake, &"timed out"),
        },
        _ = ticket.evicted() => return shared.dropped(peer, Dropped::Evicted, &"in the handshake"),
    };
    ticket.handshake_done();
    let (_, conn) = stream.get_ref();
    let ekm = match tls::export_ekm(conn) {
        Ok(ekm) => ekm,
        Err(e) => return shared.dropped(peer, Dropped::Handshake, &e),
    };
    let h2 = conn.alpn_protocol() == Some(tls::ALPN_H2);
    tracing::debug!(%peer, ekm_fp = %ekm.fingerprint(), h2, "connection bound");
    let layer = shared.binding.layer_for(ekm).admitted_as(ticket.clone());
    let clock = TrafficClock::new();
    let svc = Tracked {
        inner: shared.app.make(layer, peer),
        clock: clock.clone(),
        log: shared.log.clone(),
        peer,
    };
    let http = if h2 { &shared.http2 } else { &shared.http1 };
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
    tokio::select! {
        ended = watcher.watch(conn) => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = clock.idle_for(opts.idle_timeout) => {
            shared.dropped(peer, Dropped::Idle, &"no request or response traffic");
        }
        _ = ticket.evicted() => shared.dropped(peer, Dropped::Evicted, &"no token yet"),
        _ = unauthenticated_at(auth_deadline, &ticket) => {
            shared.dropped(peer, Dropped::AuthDeadline, &"no accepted token in time");
        }
    }
}

/// Resolves at `deadline` if the connection has not authenticated by then;
/// never otherwise.
async fn unauthenticated_at(deadline: tokio::time::Instant, ticket: &Ticket) {
    tokio::time::sleep_until(deadline).await;
    if ticket.is_authenticated() {
        std::future::pending::<()>().await
    }
}

/// When request or response traffic last moved on a connection, and how
/// many handlers are at work on it.
#[derive(Clone)]
struct TrafficClock(Arc<ClockState>);

struct ClockState {
    base: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl TrafficClock {
    fn new() -> Self {
        TrafficClock(Arc::new(ClockState {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        let ms = self.0.base.elapsed().as_millis() as u64;
        self.0.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no handler has worked and nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
            let quiet = self.0.base.elapsed().saturating_sub(last);
            if quiet >= limit && self.0.busy.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(quiet).max(Duration::from_millis(100))).await;
        }
    }
}

/// A handler at work: counted busy from the request's arrival to its
/// response head (or the handler's future being dropped).
struct Busy(TrafficClock);

impl Busy {
    fn new(clock: TrafficClock) -> Self {
        clock.touch();
        clock.0.busy.fetch_add(1, Ordering::Relaxed);
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0 .0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The application service with its traffic counted on the connection's
/// clock, and one access line per request: always for a success, within
/// the log budget for a refusal.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    clock: TrafficClock,
    log: Arc<Log>,
    peer: SocketAddr,
}

impl<S> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = AppFuture,
    >,
{
    type Response = Response<TrackedBody<Body>>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> TrackedFuture {
        TrackedFuture {
            busy: Some(Busy::new(self.clock.clone())),
            access: Access {
                start: Instant::now(),
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                peer: self.peer,
                log: self.log.clone(),
            },
            inner: self.inner.call(req),
        }
    }
}

/// What the access line says of a request besides its response.
struct Access {
    start: Instant,
    method: Method,
    path: String,
    peer: SocketAddr,
    log: Arc<Log>,
}

pin_project_lite::pin_project! {
    struct TrackedFuture {
        #[pin]
        inner: AppFuture,
        busy: Option<Busy>,
        access: Access,
    }
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody<Body>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(resp)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        this.access.log(&resp);
        let clock = this.busy.take().map(|b| b.0.clone());
        Poll::Ready(Ok(resp.map(|body| TrackedBody { inner: body, clock })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that marks the connection active whenever the peer
    /// takes a frame of it; one the peer never reads leaves it quiet.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        clock: Option<TrafficClock>,
    }
}

impl<B: hyper::body::Body> hyper::body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(clock)) = (&r, this.clock.as_ref()) {
            clock.touch();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
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
            match answer {
                Answer::Later(f) => f.await,
                Answer::Now(resp) => Ok(resp),
            }
        })
    }
}

impl Access {
    fn log(&self, resp: &Response<Body>) {
        let refused = !resp.status().is_success();
        if refused {
            self.log
                .counters
                .requests_refused
                .fetch_add(1, Ordering::Relaxed);
            if !self.log.budget.allow() {
                return;
            }
        }
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
            peer = %self.peer,
            method = %self.method,
            path = self.path,
            status = resp.status().as_u16(),
            %client,
            %form,
            outcome = %code,
            latency_us = self.start.elapsed().as_micros() as u64,
        );
    }
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
