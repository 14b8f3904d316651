//! Serving: the TLS 1.3 accept loop. It admits connections within the
//! budgets of [`crate::serve::admission`], exports each one's EKM into a
//! [`ConnectionBinding`] that every request carries as an extension (where
//! the [`crate::serve::layer::BindingLayer`] finds it), serves any tower service
//! over HTTP/1.1 or HTTP/2 by ALPN, enforces the deadlines, logs one line
//! per request within the log budget, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::serve::admission::{Admission, Budgets, Refused, Ticket};
use crate::serve::layer::{Binding, ConnectionBinding, Outcome};
use crate::serve::metrics as m;
#[cfg(feature = "proxy-protocol")]
use crate::serve::proxy_protocol;
use crate::serve::throttle::{Counters, Dropped, LogBudget};
use crate::serve::tls;
#[cfg(feature = "frontend")]
use crate::serve::workers::Detach;
use crate::serve::workers::Workers;

/// Limits of the serving loop. The defaults suit a 2-core box serving about
/// a thousand clients; docs/SECURITY.md says what each one stops.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Connections served at once. When full, the oldest connection that
    /// has not yet presented an accepted token is closed to admit a new one
    /// (the admission budget); authenticated ones never are.
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
    /// Balancers that put a PROXY protocol header (v1 or v2) before TLS;
    /// their connections must carry one, and the client it names is the
    /// peer everywhere (log, [`PeerAddr`], per-source budget). Empty (the
    /// default): no peer may send one.
    #[cfg(feature = "proxy-protocol")]
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    /// Peers whose `X-Request-Id` is kept as the request's id (a trusted
    /// proxy in front); from any other peer, and when it is missing or not
    /// 1-128 visible ASCII characters, the server makes one.
    #[cfg(any(feature = "gateway", feature = "proxy-protocol", feature = "frontend"))]
    pub request_id_from: Vec<ipnet::IpNet>,
    /// A connection this old is asked to finish (HTTP/2 GOAWAY, HTTP/1.1
    /// closed after its response), so clients reconnect and spread again
    /// after a scale-out or a key rotation. `None` (the default): no limit.
    pub max_connection_age: Option<Duration>,
    /// Label `jose_binding_requests_total` with the client id too. Off by
    /// default: the series then grow with the number of clients.
    pub metrics_client_labels: bool,
    /// Threads of the server's own that serve connections, each driving a
    /// single-threaded runtime: a connection and everything its requests
    /// do stay on one thread. 0 (the default): connections are tasks of
    /// the runtime [`serve`] runs on.
    pub connection_threads: usize,
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
            #[cfg(feature = "proxy-protocol")]
            proxy_protocol_from: Vec::new(),
            #[cfg(any(feature = "gateway", feature = "proxy-protocol", feature = "frontend"))]
            request_id_from: Vec::new(),
            max_connection_age: None,
            metrics_client_labels: false,
            connection_threads: 0,
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

/// The error type hyper accepts from a service or a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve`] serves: any clonable tower service over hyper requests
/// whose responses hyper can write (any body, streaming included). Every
/// such service is one; the trait only names the bounds once.
pub trait App:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body type.
    type Body: hyper::body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> App for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

/// What an application's upstream did for a request (a proxy such as
/// [`crate::proxy::gateway`] puts it on its responses); the access line adds it.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamReport {
    /// The upstream's status, if it answered.
    pub status: Option<u16>,
    /// From the request's arrival at the proxy to the upstream's head.
    pub latency: Duration,
    /// A stable code when forwarding failed.
    pub failure: Option<&'static str>,
    /// What failed, for the log only.
    pub cause: Option<Box<str>>,
}

/// The gateway's route for a request, on its response for the access
/// line: the route's prefix, and the outcome when the gateway refused it.
#[derive(Debug, Clone)]
pub(crate) struct RouteReport {
    /// The prefix of the route that covered the path, if one did.
    pub prefix: Option<Arc<str>>,
    /// `forbidden`, `no_route` or `bad_path` when the gateway answered.
    pub refused: Option<&'static str>,
    /// Why a verified client was forbidden.
    pub why: Option<&'static str>,
}

/// The peer's address, as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The request's id, as a request extension and in its access line: a
/// trusted proxy's `X-Request-Id`, else 32 random hex digits. The gateway
/// sends it upstream as `X-Request-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(http::HeaderValue);

impl RequestId {
    /// The header name it travels in.
    pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (see `of`).
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.0
    }

    /// The proxy's id when `trusted` and well formed, else a fresh one.
    fn of(headers: &http::HeaderMap, trusted: bool) -> RequestId {
        let given = headers.get(&Self::HEADER).filter(|v| {
            let b = v.as_bytes();
            trusted && (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
        });
        match given {
            Some(v) => RequestId(v.clone()),
            None => RequestId::fresh(),
        }
    }

    fn fresh() -> RequestId {
        let mut bytes = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            // The system RNG failed: an id that is at least unique here.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        }
        let mut hex = [0u8; 32];
        for (i, b) in bytes.iter().enumerate() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex[2 * i] = DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        RequestId(
            http::HeaderValue::from_bytes(&hex).unwrap_or(http::HeaderValue::from_static("-")),
        )
    }
}

/// Turns true when the server stops: each connection then finishes
/// gracefully.
type Closing = tokio::sync::watch::Receiver<bool>;

/// What the accept loop and every connection task share.
struct Shared<S> {
    /// `None` behind a frontend: the listener speaks plain HTTP.
    acceptor: Option<TlsAcceptor>,
    binding: Binding,
    app: S,
    /// Protocol chosen by ALPN: one builder each, made once.
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    /// Without TLS: HTTP/1.1, or HTTP/2 by its preface (h2c prior knowledge).
    #[cfg(feature = "frontend")]
    either: auto::Builder<TokioExecutor>,
    /// Behind a frontend: who it is, and the client connections' state.
    #[cfg(feature = "frontend")]
    frontend: Option<Frontend>,
    opts: ServerOptions,
    log: Arc<Log>,
    /// Flips to true once serving has stopped (see [`ConnectionGuard`]).
    stop: tokio::sync::watch::Receiver<bool>,
    #[cfg(feature = "proxy-protocol")]
    balancers: proxy_protocol::Trusted,
}

/// The counters, and the log budget that refusals and drops share.
struct Log {
    counters: Counters,
    budget: LogBudget,
}

impl<S> Shared<S> {
    fn dropped(&self, peer: SocketAddr, why: Dropped, detail: &dyn std::fmt::Display) {
        self.log.dropped(peer, why, detail)
    }
}

impl Log {
    /// Counts a connection the server closes, and logs it within the budget.
    fn dropped(&self, peer: SocketAddr, why: Dropped, detail: &dyn std::fmt::Display) {
        self.counters.count_dropped(why);
        metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => why.as_str()).increment(1);
        if self.budget.allow() {
            tracing::info!(%peer, reason = why.as_str(), %detail, "connection dropped");
        }
    }
}

/// The rules of a connection, for a tunnel that takes it over: once hyper
/// hands an upgraded connection's bytes to the application, nothing of
/// the serving loop watches it any more, so the tunnel itself must keep
/// its place in the budgets, close when the connection is evicted, at the
/// authentication deadline unless a token was accepted on it, when it
/// falls silent, and when the server stops. Every request served by
/// [`serve`] with an `Upgrade` header carries one as an extension (no
/// other can become a tunnel); cloning shares it.
#[derive(Clone)]
pub(crate) struct ConnectionGuard(Arc<Guarded>);

struct Guarded {
    ticket: Arc<Ticket>,
    auth_deadline: tokio::time::Instant,
    // Read by the gateway's tunnels only.
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    idle_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    log: Arc<Log>,
    peer: SocketAddr,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("peer", &self.0.peer)
            .field("authenticated", &self.0.ticket.is_authenticated())
            .finish_non_exhaustive()
    }
}

impl ConnectionGuard {
    /// The connection's idle timeout ([`ServerOptions::idle_timeout`]).
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.0.idle_timeout
    }

    /// Resolves when the connection must close: evicted to make room, at
    /// the authentication deadline if no token was accepted on it, or when
    /// the serving loop has stopped. Logs why, as the loop logs a drop.
    pub(crate) async fn closed(&self) {
        let g = &self.0;
        let mut stop = g.stop.clone();
        tokio::select! {
            _ = g.ticket.evicted() => g.log.dropped(g.peer, Dropped::Evicted, &"tunnel without a token"),
            _ = unauthenticated_at(g.auth_deadline, &g.ticket) => {
                g.log.dropped(g.peer, Dropped::AuthDeadline, &"tunnel without an accepted token");
            }
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    /// Logs a tunnel closed for silence.
    pub(crate) fn idle(&self) {
        let g = &self.0;
        g.log
            .dropped(g.peer, Dropped::Idle, &"tunnel silent both ways");
    }
}

/// Serves `app` until `shutdown` resolves, then lets in-flight requests
/// finish (up to `shutdown_grace`).
///
/// `app` is any tower service over hyper requests, with any body: mount
/// `binding.layer()` on it (or on its protected routes) once, and every
/// request reaches it with this connection's [`ConnectionBinding`] and
/// [`PeerAddr`] as extensions.
pub async fn serve<S: App>(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    binding: Binding,
    app: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    run(
        Listening::Tcp(listener),
        Some(TlsAcceptor::from(tls_config)),
        #[cfg(feature = "frontend")]
        None,
        binding,
        app,
        opts,
        shutdown,
    )
    .await
}

/// Behind a frontend that terminates TLS: who may connect, and how many
/// client connections' state to keep.
#[cfg(feature = "frontend")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FrontendOptions {
    /// The frontends' addresses; a connection from any other is closed at
    /// accept.
    pub from: Vec<ipnet::IpNet>,
    /// Client connections whose state (pinned client, replay cache) is
    /// kept at once.
    pub max_connections: usize,
}

#[cfg(feature = "frontend")]
impl Default for FrontendOptions {
    fn default() -> Self {
        FrontendOptions {
            from: vec![
                ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            max_connections: Budgets::default().max_connections * 4,
        }
    }
}

#[cfg(feature = "frontend")]
struct Frontend {
    from: Vec<ipnet::IpNet>,
    connections: Arc<crate::serve::frontend::Connections>,
}

/// Where a frontend's connections arrive: TCP (from
/// [`FrontendOptions::from`] only) or a Unix socket, whose mode and
/// owner say who may connect.
#[cfg(feature = "frontend")]
#[derive(Debug)]
pub enum FrontendListener {
    /// A TCP listener; peers outside [`FrontendOptions::from`] are closed.
    Tcp(TcpListener),
    /// A Unix socket, made by [`FrontendListener::bind_unix`].
    Unix(tokio::net::UnixListener),
}

#[cfg(feature = "frontend")]
impl FrontendListener {
    /// Binds a Unix socket at `path` with `mode` (0660: the socket's
    /// group, the frontend's, may connect) from the first instant; a stale
    /// socket there is replaced, anything else is left alone.
    pub fn bind_unix(
        path: &std::path::Path,
        mode: u32,
    ) -> Result<FrontendListener, crate::serve::unix_socket::UnixSocketError> {
        crate::serve::unix_socket::bind(path, mode).map(FrontendListener::Unix)
    }
}

#[cfg(feature = "frontend")]
impl From<TcpListener> for FrontendListener {
    fn from(l: TcpListener) -> Self {
        FrontendListener::Tcp(l)
    }
}

/// The listener of [`run`]: TLS mode's TCP, or a frontend's.
enum Listening {
    Tcp(TcpListener),
    #[cfg(feature = "frontend")]
    Unix(tokio::net::UnixListener),
}

/// One accepted connection of [`Listening`].
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    #[cfg(feature = "frontend")]
    Unix(tokio::net::UnixStream),
}

impl Listening {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listening::Tcp(l) => l.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer)),
            #[cfg(feature = "frontend")]
            Listening::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

/// The peer address a Unix socket's connection is given: it has none
/// (the frontend's `X-Forwarded-For` names the client).
#[cfg(feature = "frontend")]
const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Serves `app` behind a frontend that terminates TLS (HAProxy with
/// `ssl_fc_exporter_secret`): plain HTTP/1.1 or h2c on `listener`, from
/// `frontend.from` only. Each request's binding is the client TLS
/// connection its headers name (`x-jose-binding-exporter-secret` with
/// `x-jose-binding-tls-cipher`, or `x-jose-binding-ekm`), removed before
/// `app` sees the request; everything else is as [`serve`]. `listener` is
/// a [`TcpListener`] or a [`FrontendListener`].
#[cfg(feature = "frontend")]
pub async fn serve_frontend<S: App>(
    listener: impl Into<FrontendListener>,
    binding: Binding,
    app: S,
    opts: ServerOptions,
    frontend: FrontendOptions,
    shutdown: impl Future<Output = ()>,
) {
    let connections = crate::serve::frontend::Connections::new(
        binding.clone(),
        frontend.max_connections,
        opts.idle_timeout,
    );
    let frontend = Frontend {
        from: frontend.from,
        connections,
    };
    let listener = match listener.into() {
        FrontendListener::Tcp(l) => Listening::Tcp(l),
        FrontendListener::Unix(l) => Listening::Unix(l),
    };
    run(listener, None, Some(frontend), binding, app, opts, shutdown).await
}

async fn run<S: App>(
    listener: Listening,
    acceptor: Option<TlsAcceptor>,
    #[cfg(feature = "frontend")] frontend: Option<Frontend>,
    binding: Binding,
    app: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let admission = Admission::new(opts.budgets());
    // Every connection task holds a receiver: `closed()` resolves when the
    // last one has finished.
    let (closing, _) = tokio::sync::watch::channel(false);
    // Tunnels outlive their connection's task; they close when this says so.
    let (stopped, stop) = tokio::sync::watch::channel(false);
    let workers = match opts.connection_threads {
        0 => Workers::here(),
        n => Workers::start(n, stop.clone()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot start the connection threads; serving on this runtime");
            Workers::here()
        }),
    };
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
        acceptor,
        binding,
        app,
        http1: http.clone().http1_only(),
        #[cfg(feature = "frontend")]
        either: http.clone(),
        #[cfg(feature = "frontend")]
        frontend,
        http2: http.http2_only(),
        log: Arc::new(Log {
            counters: Counters::default(),
            budget: LogBudget::new(opts.refusal_log_per_sec),
        }),
        #[cfg(feature = "proxy-protocol")]
        balancers: proxy_protocol::Trusted(opts.proxy_protocol_from.clone()),
        opts,
        stop,
    });
    let reporter = tokio::spawn(report_suppressed(shared.clone()));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
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
        let (tcp, peer) = match accepted {
            Accepted::Tcp(tcp, peer) => (tcp, peer),
            // Only a frontend listens on a Unix socket; its mode is the
            // check that --frontend-from is for TCP.
            #[cfg(feature = "frontend")]
            Accepted::Unix(unix) => {
                if let Some(f) = &shared.frontend {
                    serve_frontend_connection(
                        &shared, &workers, f, &admission, &closing, unix, UNIX_PEER,
                    );
                }
                continue;
            }
        };
        #[cfg(feature = "frontend")]
        if let Some(f) = &shared.frontend {
            if !f.from.iter().any(|n| n.contains(&peer.ip())) {
                shared.dropped(peer, Dropped::NotFrontend, &"not in --frontend-from");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            serve_frontend_connection(&shared, &workers, f, &admission, &closing, tcp, peer);
            continue;
        }
        // A balancer's client is known only from its PROXY header.
        #[cfg(feature = "proxy-protocol")]
        let admitted = if shared.balancers.contains(peer.ip()) {
            admission.admit_unresolved()
        } else {
            admission.admit(peer.ip())
        };
        #[cfg(not(feature = "proxy-protocol"))]
        let admitted = admission.admit(peer.ip());
        let ticket = match admitted {
            Ok((ticket, made)) => {
                count_evictions(&made);
                ticket
            }
            Err(Refused(budget)) => {
                metrics::counter!(m::REFUSALS, "budget" => budget.as_str()).increment(1);
                shared.dropped(peer, Dropped::Refused, &budget.as_str());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let finish = closing.subscribe();
        let shared = shared.clone();
        workers.serve(tcp, move |tcp| {
            tokio::spawn(serve_connection(shared, tcp, peer, ticket, finish));
        });
    }
    drop(listener);
    reporter.abort();
    tokio::select! {
        _ = async {
            let _ = closing.send(true);
            closing.closed().await
        } => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(shared.opts.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; dropping remaining connections")
        }
    }
    let _ = stopped.send(true);
    // When this returns every socket is closed: what still runs on the
    // threads ends with their runtimes, which the joins wait for.
    let threads = workers.finish();
    if !threads.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// A frontend's connection, admitted and served in its own task.
#[cfg(feature = "frontend")]
fn serve_frontend_connection<S, IO>(
    shared: &Arc<Shared<S>>,
    workers: &Workers,
    frontend: &Frontend,
    admission: &Arc<Admission>,
    closing: &tokio::sync::watch::Sender<bool>,
    io: IO,
    peer: SocketAddr,
) where
    S: App,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Detach,
{
    // The frontend is trusted infrastructure, with many clients behind
    // each connection: none of the budgets for unauthenticated
    // connections applies to it.
    let Ok((ticket, _)) = admission.admit_unresolved() else {
        shared.dropped(peer, Dropped::Refused, &"connections");
        return;
    };
    ticket.authenticate();
    let finish = closing.subscribe();
    let conns = frontend.connections.clone();
    let shared = shared.clone();
    workers.serve(io, move |io| {
        tokio::spawn(async move {
            let accepted = tokio::time::Instant::now();
            let http = &shared.either;
            let bind = Bind::Frontend(conns);
            serve_http(
                &shared,
                http,
                io,
                peer,
                Arc::new(ticket),
                finish,
                accepted,
                bind,
            )
            .await
        });
    });
}

/// Counts the evictions an admission made, by budget.
fn count_evictions(made: &crate::serve::admission::Admitted) {
    for budget in &made.evicted {
        metrics::counter!(m::EVICTIONS, "budget" => budget.as_str()).increment(1);
    }
}

/// Once a second, if the log budget suppressed anything, one line with how
/// many and the running totals.
async fn report_suppressed<S>(shared: Arc<Shared<S>>) {
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

/// One connection: the PROXY header from a balancer, then
/// [`serve_tls`].
async fn serve_connection<S: App>(
    shared: Arc<Shared<S>>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    closing: Closing,
) {
    let accepted = tokio::time::Instant::now();
    #[cfg(feature = "proxy-protocol")]
    {
        let read = tokio::time::timeout_at(
            accepted + shared.opts.handshake_timeout,
            proxy_protocol::accept(tcp, peer, &shared.balancers),
        );
        let (client, io) = tokio::select! {
            r = read => match r {
                Ok(Ok(proxy_protocol::Accepted::Client(client, io))) => (client, io),
                Ok(Ok(proxy_protocol::Accepted::HealthCheck)) => {
                    tracing::debug!(%peer, "balancer health check (PROXY LOCAL)");
                    return;
                }
                Ok(Err((peer, e))) => {
                    metrics::counter!(m::PROXY_HEADER_ERRORS, "error" => e.as_str()).increment(1);
                    return shared.dropped(peer, Dropped::ProxyHeader, &e);
                }
                Err(_) => return shared.dropped(peer, Dropped::Handshake, &"timed out before TLS"),
            },
            _ = ticket.evicted() => return shared.dropped(peer, Dropped::Evicted, &"before TLS"),
        };
        if shared.balancers.contains(peer.ip()) {
            match ticket.set_source(client.ip()) {
                Ok(made) => count_evictions(&made),
                Err(Refused(budget)) => {
                    metrics::counter!(m::REFUSALS, "budget" => budget.as_str()).increment(1);
                    return shared.dropped(client, Dropped::Refused, &budget.as_str());
                }
            }
        }
        serve_tls(shared, io, client, ticket, closing, accepted).await
    }
    #[cfg(not(feature = "proxy-protocol"))]
    serve_tls(shared, tcp, peer, ticket, closing, accepted).await
}

/// The TLS handshake (within the handshake timeout of `accepted`), then
/// HTTP until the peer leaves, the server shuts down, or a limit closes
/// it. `peer` is the client.
async fn serve_tls<S, IO>(
    shared: Arc<Shared<S>>,
    io: IO,
    peer: SocketAddr,
    ticket: Ticket,
    closing: Closing,
    accepted: tokio::time::Instant,
) where
    S: App,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ticket = Arc::new(ticket);
    let opts = &shared.opts;
    let Some(acceptor) = &shared.acceptor else {
        return;
    };
    let handshake = tokio::time::timeout_at(accepted + opts.handshake_timeout, acceptor.accept(io));
    let handshakes = |result: &'static str| {
        metrics::counter!(m::TLS_HANDSHAKES, "result" => result).increment(1);
    };
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                handshakes("failed");
                return shared.dropped(peer, Dropped::Handshake, &e);
            }
            Err(_) => {
                handshakes("timeout");
                return shared.dropped(peer, Dropped::Handshake, &"timed out");
            }
        },
        _ = ticket.evicted() => return shared.dropped(peer, Dropped::Evicted, &"in the handshake"),
    };
    handshakes("ok");
    ticket.handshake_done();
    let (_, conn) = stream.get_ref();
    let ekm = match tls::export_ekm(conn) {
        Ok(ekm) => ekm,
        Err(e) => return shared.dropped(peer, Dropped::Handshake, &e),
    };
    let h2 = conn.alpn_protocol() == Some(tls::ALPN_H2);
    tracing::debug!(%peer, ekm_fp = %ekm.fingerprint(), h2, "connection bound");
    let bind = Bind::Connection(shared.binding.connection(ekm).admitted_as(ticket.clone()));
    let http = if h2 { &shared.http2 } else { &shared.http1 };
    serve_http(&shared, http, stream, peer, ticket, closing, accepted, bind).await
}

/// Where a request's [`ConnectionBinding`] comes from.
#[derive(Clone)]
enum Bind {
    /// The TLS connection it arrived on.
    Connection(ConnectionBinding),
    /// The client connection the frontend's headers name.
    #[cfg(feature = "frontend")]
    Frontend(Arc<crate::serve::frontend::Connections>),
}

/// HTTP on an established connection (TLS or a frontend's plain one) until
/// the peer leaves, the server shuts down, or a limit closes it.
#[allow(clippy::too_many_arguments)]
async fn serve_http<S, IO>(
    shared: &Arc<Shared<S>>,
    http: &auto::Builder<TokioExecutor>,
    io: IO,
    peer: SocketAddr,
    ticket: Arc<Ticket>,
    mut closing: Closing,
    accepted: tokio::time::Instant,
    bind: Bind,
) where
    S: App,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let opts = &shared.opts;
    let auth_deadline = accepted + opts.auth_timeout;
    let guard = ConnectionGuard(Arc::new(Guarded {
        ticket: ticket.clone(),
        auth_deadline,
        idle_timeout: opts.idle_timeout,
        stop: shared.stop.clone(),
        log: shared.log.clone(),
        peer,
    }));
    let clock = TrafficClock::new();
    // A frontend is trusted with far more than an id: the binding itself.
    #[cfg(feature = "frontend")]
    let from_frontend = matches!(bind, Bind::Frontend(_));
    #[cfg(not(feature = "frontend"))]
    let from_frontend = false;
    let svc = Tracked {
        inner: shared.app.clone(),
        bind,
        guard,
        clock: clock.clone(),
        log: shared.log.clone(),
        peer,
        client_labels: opts.metrics_client_labels,
        #[cfg(any(feature = "gateway", feature = "proxy-protocol", feature = "frontend"))]
        trusted_ids: from_frontend || opts.request_id_from.iter().any(|n| n.contains(&peer.ip())),
        #[cfg(not(any(feature = "gateway", feature = "proxy-protocol", feature = "frontend")))]
        trusted_ids: from_frontend,
    };
    // With upgrades, so an app (the gateway) can tunnel a WebSocket.
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    // Asked to finish: HTTP/2 GOAWAY, HTTP/1.1 closed after the response in
    // flight. Once, when the server stops or the connection reaches its age.
    let mut finishing = false;
    let old_at = opts.max_connection_age.map(|age| accepted + age);
    // Once the shutdown grace is over, what is still open is dropped here,
    // not left running after serve() has returned.
    let mut stopped = shared.stop.clone();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => {
                tracing::debug!(%peer, "shutdown grace over: connection dropped");
                return;
            }
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|c| *c), if !finishing => {
                conn.as_mut().graceful_shutdown();
                finishing = true;
            }
            _ = tokio::time::sleep_until(old_at.unwrap_or(accepted)), if old_at.is_some() && !finishing => {
                tracing::debug!(%peer, "connection at its maximum age: closing it gracefully");
                conn.as_mut().graceful_shutdown();
                finishing = true;
            }
            _ = clock.idle_for(opts.idle_timeout) => {
                return shared.dropped(peer, Dropped::Idle, &"no request or response traffic");
            }
            _ = ticket.evicted() => return shared.dropped(peer, Dropped::Evicted, &"no token yet"),
            _ = unauthenticated_at(auth_deadline, &ticket) => {
                return shared.dropped(peer, Dropped::AuthDeadline, &"no accepted token in time");
            }
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

/// When something last moved, to the millisecond, without a lock.
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit` while `busy` says no.
    pub(crate) async fn idle_for(&self, limit: Duration, busy: impl Fn() -> bool) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.base.elapsed().saturating_sub(last);
            if quiet >= limit && !busy() {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(quiet).max(Duration::from_millis(100))).await;
        }
    }
}

/// When request or response traffic last moved on a connection, and how
/// many handlers are at work on it.
#[derive(Clone)]
struct TrafficClock(Arc<ClockState>);

struct ClockState {
    activity: Activity,
    busy: AtomicUsize,
}

impl TrafficClock {
    fn new() -> Self {
        TrafficClock(Arc::new(ClockState {
            activity: Activity::new(),
            busy: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        self.0.activity.touch();
    }

    /// Resolves once no handler has worked and nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let busy = || self.0.busy.load(Ordering::Relaxed) != 0;
        self.0.activity.idle_for(limit, busy).await
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
    bind: Bind,
    guard: ConnectionGuard,
    clock: TrafficClock,
    log: Arc<Log>,
    peer: SocketAddr,
    client_labels: bool,
    /// Whether the peer's `X-Request-Id` is believed.
    trusted_ids: bool,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let id = RequestId::of(req.headers(), self.trusted_ids);
        // Behind a frontend, the client is the last X-Forwarded-For entry
        // the frontend appended (port unknown: 0).
        let peer = match &self.bind {
            #[cfg(feature = "frontend")]
            Bind::Frontend(_) => {
                last_forwarded_for(req.headers()).map_or(self.peer, |ip| SocketAddr::new(ip, 0))
            }
            Bind::Connection(_) => self.peer,
        };
        let access = Access {
            start: Instant::now(),
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            peer,
            log: self.log.clone(),
            client_labels: self.client_labels,
            id: id.clone(),
        };
        // Only a request that asks to upgrade can become a tunnel; the
        // others are spared the allocation.
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        let conn = match &self.bind {
            Bind::Connection(c) => Some(c.clone()),
            #[cfg(feature = "frontend")]
            Bind::Frontend(table) => {
                // The binding headers go whatever they say; without a
                // usable one the layer answers 500 not_bound.
                match crate::serve::frontend::take_ekm(req.headers_mut()).and_then(|e| table.get(e))
                {
                    Ok(c) => Some(c),
                    Err(why) => {
                        if self.log.budget.allow() {
                            tracing::warn!(peer = %self.peer, reason = why.as_str(), "a request without a usable binding header from the frontend");
                        }
                        None
                    }
                }
            }
        };
        let ext = req.extensions_mut();
        if let Some(c) = conn {
            ext.insert(c);
        }
        if upgrade {
            ext.insert(self.guard.clone());
        }
        ext.insert(PeerAddr(peer));
        ext.insert(id);
        TrackedFuture {
            busy: Some(Busy::new(self.clock.clone())),
            access,
            inner: self.inner.call(req),
        }
    }
}

/// The last address in the request's `X-Forwarded-For` headers.
#[cfg(feature = "frontend")]
fn last_forwarded_for(headers: &http::HeaderMap) -> Option<std::net::IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

/// What the access line says of a request besides its response.
struct Access {
    start: Instant,
    method: Method,
    path: String,
    peer: SocketAddr,
    log: Arc<Log>,
    client_labels: bool,
    id: RequestId,
}

pin_project_lite::pin_project! {
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
        access: Access,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(resp)) => resp,
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

impl Access {
    /// The request's metrics, always; its access line, within the log
    /// budget for a refusal.
    fn log<B>(&self, resp: &Response<B>) {
        let latency = self.start.elapsed();
        self.record(resp, latency);
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
        let route = resp.extensions().get::<RouteReport>();
        let code = match (outcome, route.and_then(|r| r.refused)) {
            (Some(Outcome { code: Some(c), .. }), _) => c.as_str(),
            (_, Some(refused)) => refused,
            (Some(_), None) => "ok",
            (None, None) => "-",
        };
        let upstream = resp.extensions().get::<UpstreamReport>();
        tracing::info!(
            target: "jose_binding::access",
            request_id = %self.id.as_str(),
            peer = %self.peer,
            method = %self.method,
            path = self.path,
            status = resp.status().as_u16(),
            %client,
            %form,
            outcome = %code,
            route = route.and_then(|r| r.prefix.as_deref()),
            refused_because = route.and_then(|r| r.why),
            latency_us = latency.as_micros() as u64,
            upstream_status = upstream.and_then(|u| u.status),
            upstream_us = upstream.map(|u| u.latency.as_micros() as u64),
            upstream_error = upstream.and_then(|u| u.failure),
            upstream_cause = upstream.and_then(|u| u.cause.as_deref()),
        );
    }

    fn record<B>(&self, resp: &Response<B>, latency: Duration) {
        let outcome = resp.extensions().get::<Outcome>();
        let refused = resp
            .extensions()
            .get::<RouteReport>()
            .and_then(|r| r.refused);
        let code = match (outcome, refused) {
            (Some(Outcome { code: Some(c), .. }), _) => c.as_str(),
            (_, Some(refused)) => refused,
            (Some(_), None) => "ok",
            (None, None) => "none",
        };
        let form = outcome.and_then(|o| o.form).map_or("none", |f| f.as_str());
        match outcome.and_then(|o| o.client_id.as_ref()) {
            Some(client) if self.client_labels => metrics::counter!(
                m::REQUESTS, "outcome" => code, "form" => form, "client" => client.as_str().to_owned()
            )
            .increment(1),
            _ => metrics::counter!(m::REQUESTS, "outcome" => code, "form" => form).increment(1),
        }
        metrics::histogram!(m::REQUEST_DURATION).record(m::seconds(latency));
        if let Some(u) = resp.extensions().get::<UpstreamReport>() {
            let class = m::status_class(u.failure.map_or(u.status, |_| None));
            metrics::counter!(m::UPSTREAM_RESPONSES, "class" => class).increment(1);
            metrics::histogram!(m::UPSTREAM_DURATION).record(m::seconds(u.latency));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &[u8]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            RequestId::HEADER,
            http::HeaderValue::from_bytes(id).unwrap(),
        );
        h
    }

    #[test]
    fn a_trusted_proxys_request_id_is_kept_and_any_other_replaced() {
        assert_eq!(
            RequestId::of(&headers(b"abc-123"), true).as_str(),
            "abc-123"
        );
        for (id, trusted) in [
            (&b"abc-123"[..], false),
            (&b"with space"[..], true),
            (&[b'a'; 129][..], true),
        ] {
            let made = RequestId::of(&headers(id), trusted);
            assert_ne!(made.as_str().as_bytes(), id);
            assert_eq!(made.as_str().len(), 32);
            assert!(made.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let (a, b) = (RequestId::fresh(), RequestId::fresh());
        assert_ne!(a, b, "fresh ids differ");
    }
}
