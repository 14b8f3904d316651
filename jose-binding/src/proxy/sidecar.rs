//! The client sidecar: a local plain-HTTP proxy that sends every request
//! of an app in any language over bound TLS connections, with a fresh
//! token each, so the app never sees a key, an EKM or a token.
//!
//! Whoever reaches the listener acts as this client: it listens on
//! loopback (or a 0600 Unix socket) unless told otherwise, and refuses
//! peers that are not on loopback.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tower_service::Service;

use crate::protocol::issuer::{Issuer, REGISTERED};
use crate::protocol::token::Form;
use crate::proxy::hop::{
    clean_trailers, error_chain, is_websocket_upgrade, strip_hop_by_hop, switches_to_websocket,
    trailer_allowed, tunnel, ProxyBody, TunnelLimits,
};
use crate::proxy::retry::{unprocessed, Kept};
use crate::serve::client::{bearer, BoundConnection, BoundSender, ClientBody, ClientSetup, Target};
use crate::serve::unix_socket::{self, UnixSocketError};

/// How the sidecar sends.
#[derive(Clone)]
#[non_exhaustive]
pub struct SidecarConfig {
    /// The bound server every request goes to.
    pub target: Target,
    /// The client's id, root key, TLS and token settings.
    pub setup: ClientSetup,
    /// The form of every token (default signed).
    pub form: Form,
    /// Application claims every token carries.
    pub claims: Map<String, Value>,
    /// A request header in which the app may give more claims for one
    /// request (a JSON object); removed before sending.
    pub claims_header: HeaderName,
    /// Bound connections kept to the server.
    pub connections: usize,
    /// Hosts a forward-proxy request (`GET http://host/…`) may name; the
    /// request then goes to the configured server. Others are refused.
    pub allow_hosts: Vec<String>,
    /// Longest silence inside a response body.
    pub idle_timeout: Duration,
}

impl SidecarConfig {
    /// [`connections`](Self::connections) unless set.
    pub const DEFAULT_CONNECTIONS: usize = 4;
    /// [`claims_header`](Self::claims_header) unless set.
    pub const DEFAULT_CLAIMS_HEADER: &'static str = "x-jose-binding-claims";

    /// Defaults: form S, no claims, header `x-jose-binding-claims`, 4
    /// connections, no forward-proxy host, 60 s idle timeout.
    pub fn new(target: Target, setup: ClientSetup) -> Self {
        SidecarConfig {
            target,
            setup,
            form: Form::Signed,
            claims: Map::new(),
            claims_header: HeaderName::from_static(Self::DEFAULT_CLAIMS_HEADER),
            connections: Self::DEFAULT_CONNECTIONS,
            allow_hosts: Vec::new(),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The sidecar as a tower service over the app's requests; cloning shares
/// its connections.
#[derive(Clone)]
pub struct Sidecar {
    shared: Arc<Shared>,
}

struct Shared {
    config: SidecarConfig,
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

/// One bound connection, and the issuer of its tokens.
struct Conn {
    sender: BoundSender,
    issuer: Arc<Issuer>,
}

/// Why a request was not forwarded: a stable code for the app and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// CONNECT: an `https://` URL through the proxy; the requests inside
    /// would be hidden from it, so no token could be added.
    ConnectNotSupported,
    /// A forward-proxy request to a host not in the allow list.
    HostNotAllowed,
    /// The app sent its own `Authorization`.
    AuthorizationNotAllowed,
    /// The per-request claims header is not a JSON object of free names.
    BadClaims,
    /// The server could not be reached, or the connection failed before
    /// an answer.
    ServerUnreachable,
    /// The server answered `101` to a request that asked for no WebSocket,
    /// or switched to another protocol.
    BadUpgrade,
}

impl Refusal {
    /// The stable code, as in the answer's `error` member.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::ConnectNotSupported => "connect_not_supported",
            Refusal::HostNotAllowed => "host_not_allowed",
            Refusal::AuthorizationNotAllowed => "authorization_not_allowed",
            Refusal::BadClaims => "bad_claims",
            Refusal::ServerUnreachable => "server_unreachable",
            Refusal::BadUpgrade => "bad_upgrade",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::ConnectNotSupported => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::HostNotAllowed => StatusCode::FORBIDDEN,
            Refusal::AuthorizationNotAllowed | Refusal::BadClaims => StatusCode::BAD_REQUEST,
            Refusal::ServerUnreachable | Refusal::BadUpgrade => StatusCode::BAD_GATEWAY,
        }
    }
}

/// `{"error", "message"}` with the refusal's status.
fn refuse(why: Refusal, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": why.as_str(), "message": message}).to_string();
    let mut resp = Response::new(ProxyBody::from(Bytes::from(body)));
    *resp.status_mut() = why.status();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.extensions_mut().insert(why);
    resp
}

impl Sidecar {
    /// A sidecar with `config`; its connections are made on first use.
    pub fn new(config: SidecarConfig) -> Self {
        let n = config.connections.max(1);
        Sidecar {
            shared: Arc::new(Shared {
                slots: (0..n).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                config,
            }),
        }
    }
}

/// The future of every sidecar request.
pub type SidecarFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for Sidecar {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = SidecarFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> SidecarFuture {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(handle(&shared, req).await) })
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    match relay(shared, req).await {
        Ok(resp) => resp,
        Err(refused) => refused.into_response(),
    }
}

/// One app request: checked, made a request for the server, sent (with
/// one retry if it was never written), and the answer handed back.
async fn relay(
    shared: &Shared,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refused> {
    let cfg = &shared.config;
    admissible(cfg, &req)?;
    let claims = request_claims(&cfg.claims, req.headers().get(&cfg.claims_header))
        .map_err(|why| Refused::new(Refusal::BadClaims, why.to_string()))?;
    let websocket = is_websocket_upgrade(&req);
    let app_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (out, path) = outgoing(cfg, req, websocket);
    let (resp, attempts) = send(shared, out, &path, &claims).await?;
    answer(cfg, resp, app_upgrade, attempts)
}

/// Refuses what the sidecar never sends: CONNECT, a forward-proxy request
/// to a host not allowed, and the app's own `Authorization`.
fn admissible(cfg: &SidecarConfig, req: &Request<Incoming>) -> Result<(), Refused> {
    if req.method() == Method::CONNECT {
        return Err(Refused::new(
            Refusal::ConnectNotSupported,
            "https:// URLs cannot go through this proxy: CONNECT hides the requests, so no \
             token can be added. Use http:// URLs; the sidecar speaks TLS to the server.",
        ));
    }
    // Absolute-form (`GET http://host/…`) is how HTTP/1 clients speak to a
    // forward proxy; an HTTP/2 (h2c) request always names an authority, and
    // is in reverse mode like any other.
    let forward = req.version() < Version::HTTP_2;
    if let Some(authority) = req.uri().authority().filter(|_| forward) {
        let host = authority.host();
        if req.uri().scheme_str() != Some("http")
            || !cfg.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        {
            return Err(Refused::new(
                Refusal::HostNotAllowed,
                "this host is not in --allow-host: the request was not sent anywhere",
            ));
        }
    }
    if req.headers().contains_key(AUTHORIZATION) {
        return Err(Refused::new(
            Refusal::AuthorizationNotAllowed,
            "the sidecar authenticates every request with a bound token; remove the app's \
             own Authorization header (it would otherwise be dropped, or sent as another identity)",
        ));
    }
    Ok(())
}

/// The app's request as the server gets it, before it is addressed to a
/// connection: hop-by-hop headers, `Host` and the claims header gone, its
/// trailers kept to what may be a trailer; and its path.
fn outgoing(
    cfg: &SidecarConfig,
    req: Request<Incoming>,
    websocket: bool,
) -> (Request<ClientBody>, String) {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, websocket);
    parts.headers.remove(&cfg.claims_header);
    parts.headers.remove(HOST);
    // The app's trailers obey the header rules too: no claims header, no
    // Authorization, nothing a header section alone may carry.
    let claims_header = cfg.claims_header.clone();
    let body =
        body.map_frame(move |f| clean_trailers(f, |n| trailer_allowed(n) && *n != claims_header));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body: ClientBody = body.map_err(Into::into).boxed_unsync();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.headers_mut() = parts.headers;
    (out, path)
}

/// Sends `out` on a pooled connection with a token of that connection.
/// A request never written (no connection, or it closed first), or one
/// an HTTP/2 server said it did not process (a draining server's `GOAWAY`,
/// `REFUSED_STREAM`) with none of its body sent, is tried once more on
/// another connection; any other is not, since the server may have acted
/// on it and it is not known to be idempotent.
async fn send(
    shared: &Shared,
    mut out: Request<ClientBody>,
    path: &str,
    claims: &Map<String, Value>,
) -> Result<(Response<Incoming>, Attempts), Refused> {
    let cfg = &shared.config;
    let mut last_error = Unreachable::NotTried;
    for attempt in 0..2 {
        let slot = shared.next.fetch_add(1, Ordering::Relaxed) % shared.slots.len();
        let sent = {
            let mut guard = shared.slots[slot].lock().await;
            let conn = match ready(&mut guard, cfg).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e;
                    drop(guard);
                    // The server refused or did not answer a new connection:
                    // give a restarting server a moment before the one retry.
                    if attempt == 0 {
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                    }
                    continue;
                }
            };
            address(&mut out, &conn.sender, path, &conn.issuer, cfg, claims)
                .map_err(|e| Refused::new(Refusal::BadClaims, e.to_string()))?;
            // hyper never gives an HTTP/2 request back: keep what rebuilds it.
            let (sending, kept) = if attempt == 0 && conn.sender.is_h2() {
                let (wrapped, kept) = Kept::keep(out);
                let wrapped = wrapped.map(|b| b.boxed_unsync());
                (conn.sender.try_send(wrapped), Some(kept))
            } else {
                (conn.sender.try_send(out), None)
            };
            (sending, kept, conn.issuer.clone())
        };
        let (sending, kept, used) = sent;
        match sending.await {
            Ok(resp) => return Ok((resp, Attempts(attempt + 1))),
            Err(unsent) => {
                let refused = unprocessed(&unsent.error);
                if refused {
                    // A connection going away (or refusing streams) is
                    // replaced, so the retry does not meet it again even
                    // with one slot. Each connection has its own issuer.
                    let mut guard = shared.slots[slot].lock().await;
                    if guard
                        .as_ref()
                        .is_some_and(|c| Arc::ptr_eq(&c.issuer, &used))
                    {
                        *guard = None;
                    }
                }
                let again = match (unsent.request, kept) {
                    (Some(r), _) => Some(r),
                    (None, Some(kept)) if refused => kept.reclaim(),
                    (None, _) => None,
                };
                last_error = Unreachable::Send(unsent.error);
                match again {
                    Some(r) if attempt == 0 => out = r,
                    _ => break,
                }
            }
        }
    }
    Err(Refused::new(
        Refusal::ServerUnreachable,
        last_error.to_string(),
    ))
}

/// The server's answer for the app: a `101` joined only as the WebSocket
/// the app asked for, hop-by-hop headers removed, the body streamed.
fn answer(
    cfg: &SidecarConfig,
    mut resp: Response<Incoming>,
    app_upgrade: Option<hyper::upgrade::OnUpgrade>,
    attempts: Attempts,
) -> Result<Response<ProxyBody>, Refused> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(app) = app_upgrade.filter(|_| switches_to_websocket(resp.headers())) else {
            return Err(Refused::new(
                Refusal::BadUpgrade,
                "the server switched protocols to something other than the WebSocket asked \
                 for; the connection was not joined",
            ));
        };
        let server = hyper::upgrade::on(&mut resp);
        let limits = TunnelLimits {
            idle: cfg.idle_timeout,
            guard: None,
        };
        tokio::spawn(tunnel(app, server, limits));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    let mut resp = Response::from_parts(parts, ProxyBody::streaming(body, cfg.idle_timeout));
    resp.extensions_mut().insert(attempts);
    Ok(resp)
}

/// A refusal and what it tells the app.
struct Refused {
    why: Refusal,
    message: std::borrow::Cow<'static, str>,
}

impl Refused {
    fn new(why: Refusal, message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Refused {
            why,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        refuse(self.why, &self.message)
    }
}

/// Why the server could not be reached, for the app's 502 message.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error("no connection was tried")]
    NotTried,
    #[error("{0}")]
    Connect(#[from] crate::serve::client::ClientError),
    #[error("{}", error_chain(.0))]
    Ready(hyper::Error),
    #[error("{}", error_chain(.0))]
    Send(hyper::Error),
}

/// Why a request could not be addressed to a connection.
#[derive(Debug, thiserror::Error)]
enum AddressError {
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("{0}")]
    Token(#[from] crate::protocol::issuer::IssueError),
    #[error("{0}")]
    Header(#[from] crate::serve::client::ClientError),
}

/// Why a request's claims header was refused.
#[derive(Debug, thiserror::Error)]
enum ClaimsError {
    #[error("the claims header is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the claims header must be a JSON object")]
    NotAnObject,
    #[error("the sidecar sets {0:?} itself")]
    Registered(String),
}

/// The pause before the retry when a new connection could not be made.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// How many connections a request was tried on (1, or 2 after a retry).
#[derive(Debug, Clone, Copy)]
pub struct Attempts(pub u32);

/// A ready connection in `slot`: the one there, or a fresh one if it is
/// missing, closed or fails to become ready.
async fn ready<'a>(
    slot: &'a mut Option<Conn>,
    cfg: &SidecarConfig,
) -> Result<&'a mut Conn, Unreachable> {
    if slot.as_ref().is_some_and(|c| c.sender.is_closed()) {
        *slot = None;
    }
    if let Some(conn) = slot.as_mut() {
        if poll_ready(&mut conn.sender).await.is_ok() {
            // Reborrow through the Option, so the borrow checker sees one path.
            return slot.as_mut().ok_or(Unreachable::NotTried);
        }
        *slot = None;
    }
    let conn = BoundConnection::connect(&cfg.target, &cfg.setup).await?;
    let (sender, issuer) = conn.into_service();
    let conn = slot.insert(Conn { sender, issuer });
    poll_ready(&mut conn.sender)
        .await
        .map_err(Unreachable::Ready)?;
    Ok(conn)
}

async fn poll_ready(sender: &mut BoundSender) -> Result<(), hyper::Error> {
    std::future::poll_fn(|cx| Service::<Request<ClientBody>>::poll_ready(sender, cx)).await
}

/// Makes `req` a request for this connection: its URI form and `Host`, and
/// a fresh token bound to it.
fn address(
    req: &mut Request<ClientBody>,
    sender: &BoundSender,
    path: &str,
    issuer: &Issuer,
    cfg: &SidecarConfig,
    claims: &Map<String, Value>,
) -> Result<(), AddressError> {
    let template = sender
        .request_builder(req.method().clone(), path)
        .body(())?;
    let (tp, ()) = template.into_parts();
    *req.uri_mut() = tp.uri;
    *req.version_mut() = tp.version;
    req.headers_mut().remove(HOST);
    if let Some(h) = tp.headers.get(HOST) {
        req.headers_mut().insert(HOST, h.clone());
    }
    let token = issuer.issue(cfg.form, claims)?;
    let value = bearer(&token)?;
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// The claims of one request: the configured ones, with the members of the
/// request's claims header (a JSON object) added or replacing them. Names
/// the issuer sets (`iss`, `aud`, `iat`, `exp`, `jti`, …) are refused.
fn request_claims(
    base: &Map<String, Value>,
    header: Option<&HeaderValue>,
) -> Result<Map<String, Value>, ClaimsError> {
    let mut claims = base.clone();
    let Some(h) = header else {
        return Ok(claims);
    };
    let extra: Value = serde_json::from_slice(h.as_bytes()).map_err(ClaimsError::NotJson)?;
    let Value::Object(extra) = extra else {
        return Err(ClaimsError::NotAnObject);
    };
    for (k, v) in extra {
        if REGISTERED.contains(&k.as_str()) {
            return Err(ClaimsError::Registered(k));
        }
        claims.insert(k, v);
    }
    Ok(claims)
}

/// Why the sidecar cannot listen where it was told.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address is neither `unix:/PATH` nor a socket address.
    #[error("--listen {0:?}: use HOST:PORT or unix:/PATH")]
    BadAddress(String),
    /// A TCP address off loopback without `allow_remote`.
    #[error(
        "--listen {0}: not a loopback address; whoever reaches the sidecar acts as this \
         client, so a non-loopback address needs --allow-remote"
    )]
    NotLoopback(String),
    /// The Unix socket path exists and is not a socket; it is left alone.
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Binding the TCP address or the Unix socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address or path.
        addr: String,
        /// The error from the socket.
        source: std::io::Error,
    },
    /// The Unix socket could not be made mode 0600.
    #[error("chmod 600 {}: {source}", path.display())]
    Mode {
        /// The socket's path.
        path: PathBuf,
        /// The error from the file system.
        source: std::io::Error,
    },
}

impl ListenError {
    /// A stable code, for scripts and logs.
    pub const fn code(&self) -> &'static str {
        match self {
            ListenError::BadAddress(_) => "bad_listen_address",
            ListenError::NotLoopback(_) => "listen_not_loopback",
            ListenError::NotASocket(_) => "listen_path_not_a_socket",
            ListenError::Bind { .. } => "listen_failed",
            ListenError::Mode { .. } => "listen_socket_mode",
        }
    }
}

/// Where the sidecar listens.
pub enum Listener {
    /// TCP; peers not on loopback are refused unless `allow_remote`.
    Tcp {
        /// The bound socket.
        listener: tokio::net::TcpListener,
        /// Whether peers off loopback are served.
        allow_remote: bool,
    },
    /// A Unix socket, mode 0600 (only this user can connect).
    Unix {
        /// The bound socket.
        listener: tokio::net::UnixListener,
        /// Where it is in the file system.
        path: PathBuf,
    },
}

impl Listener {
    /// Binds `addr`: `unix:/path` or a socket address. A non-loopback
    /// address needs `allow_remote`.
    pub async fn bind(addr: &str, allow_remote: bool) -> Result<Listener, ListenError> {
        if let Some(path) = addr.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            // Only this user may connect: whoever does acts as the client.
            let listener = unix_socket::bind(&path, 0o600)?;
            return Ok(Listener::Unix { listener, path });
        }
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| ListenError::BadAddress(addr.to_owned()))?;
        if !sock.ip().is_loopback() && !allow_remote {
            return Err(ListenError::NotLoopback(addr.to_owned()));
        }
        let listener = tokio::net::TcpListener::bind(sock)
            .await
            .map_err(|source| ListenError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Listener::Tcp {
            listener,
            allow_remote,
        })
    }

    /// What to tell the user it listens on.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp { listener, .. } => listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

impl From<UnixSocketError> for ListenError {
    fn from(e: UnixSocketError) -> Self {
        match e {
            UnixSocketError::NotASocket(path) => ListenError::NotASocket(path),
            UnixSocketError::Bind { path, source } => ListenError::Bind {
                addr: path.display().to_string(),
                source,
            },
            UnixSocketError::Mode { path, source, .. } => ListenError::Mode { path, source },
        }
    }
}

/// Serves the app's requests until `shutdown`, then lets in-flight ones
/// finish (up to `grace`). One log line a request.
pub async fn serve(
    listener: Listener,
    sidecar: Sidecar,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = accept(&listener) => a,
        };
        let Some((io, peer)) = accepted else {
            continue;
        };
        let svc = Logged {
            inner: sidecar.clone(),
            peer: peer.clone(),
        };
        let conn = http
            .serve_connection_with_upgrades(io, TowerToHyperService::new(svc))
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%peer, error = %e, "app connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over"),
    }
}

/// The next app connection, or `None` for one refused (a non-loopback
/// peer) or a failed accept.
async fn accept(listener: &Listener) -> Option<(TokioIo<AppStream>, String)> {
    match listener {
        Listener::Tcp {
            listener,
            allow_remote,
        } => match listener.accept().await {
            Ok((tcp, peer)) => {
                if !peer.ip().is_loopback() && !allow_remote {
                    tracing::warn!(%peer, "refused: not a loopback peer (see --allow-remote)");
                    return None;
                }
                let _ = tcp.set_nodelay(true);
                Some((TokioIo::new(AppStream::Tcp(tcp)), peer.to_string()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        },
        Listener::Unix { listener, .. } => match listener.accept().await {
            Ok((s, _)) => Some((TokioIo::new(AppStream::Unix(s)), "unix".to_owned())),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        },
    }
}

pin_project_lite::pin_project! {
    /// An app's connection, over TCP or a Unix socket.
    #[project = AppStreamProj]
    enum AppStream {
        /// From a [`Listener::Tcp`].
        Tcp { #[pin] s: tokio::net::TcpStream },
        /// From a [`Listener::Unix`].
        Unix { #[pin] s: tokio::net::UnixStream },
    }
}

#[allow(non_snake_case)]
impl AppStream {
    fn Tcp(s: tokio::net::TcpStream) -> Self {
        AppStream::Tcp { s }
    }
    fn Unix(s: tokio::net::UnixStream) -> Self {
        AppStream::Unix { s }
    }
}

impl tokio::io::AsyncRead for AppStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.project() {
            AppStreamProj::Tcp { s } => s.poll_read(cx, buf),
            AppStreamProj::Unix { s } => s.poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for AppStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.project() {
            AppStreamProj::Tcp { s } => s.poll_write(cx, buf),
            AppStreamProj::Unix { s } => s.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.project() {
            AppStreamProj::Tcp { s } => s.poll_flush(cx),
            AppStreamProj::Unix { s } => s.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.project() {
            AppStreamProj::Tcp { s } => s.poll_shutdown(cx),
            AppStreamProj::Unix { s } => s.poll_shutdown(cx),
        }
    }
}

/// The sidecar with one log line per request.
#[derive(Clone)]
struct Logged {
    inner: Sidecar,
    peer: String,
}

impl Service<Request<Incoming>> for Logged {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = SidecarFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> SidecarFuture {
        let start = Instant::now();
        let (method, path, peer) = (
            req.method().clone(),
            req.uri().path().to_owned(),
            self.peer.clone(),
        );
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let refusal = resp.extensions().get::<Refusal>().map(|r| r.as_str());
            let attempts = resp.extensions().get::<Attempts>().map(|a| a.0);
            tracing::info!(
                target: "jose_binding::sidecar",
                %peer,
                %method,
                path,
                status = resp.status().as_u16(),
                refusal,
                attempts,
                latency_us = start.elapsed().as_micros() as u64,
            );
            Ok(resp)
        })
    }
}
