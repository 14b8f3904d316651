//! The gateway: an HTTP reverse proxy behind the binding layer, so any
//! existing HTTP service is protected without a line of it changing.
//!
//! Every request needs a bound token verified on its own connection (paths
//! under a public prefix excepted); what reaches the upstream carries the
//! verified identity in headers the gateway owns ([`headers`]), never the
//! token. Bodies stream both ways, trailers pass the same rules as headers,
//! a WebSocket upgrade (and no other) is tunnelled once its request
//! verified, the tunnel held to its connection's rules, and upstream
//! failures answer 502 or 504 without leaking the upstream's internals.

pub(crate) mod headers;
pub(crate) mod routes;
pub(crate) mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, TE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use crate::keys::keystore::KeystoreHandle;
use crate::proxy::hop::{
    clean_trailers, error_chain, is_websocket_upgrade, switches_to_websocket, tunnel, Idle,
    ProxyBody, TunnelLimits,
};
use crate::proxy::retry::{unprocessed, Kept, Reclaimable};
use crate::serve::layer::{static_bearer_accepted, BindingLayer, BindingService, Layer, Outcome};
use crate::serve::server::{
    BoxError, ConnectionGuard, PeerAddr, RequestId, RouteReport, UpstreamReport,
};
use crate::serve::status::Readiness;
use crate::Verified;
use headers::{Hop, Identity, IdentityHeaders};
use routes::{BadRoutes, Lookup, Route, Table};
use upstream::{Connector, Failure, Upstream};

use ipnet::IpNet;

/// How the gateway forwards.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where a request no route of [`routes`](Self::routes) covers goes:
    /// the route for `/`. `None`: such a request is 404 `no_route`.
    pub upstream: Option<Upstream>,
    /// Routes by path prefix, each with its upstream and who may call it;
    /// the longest prefix that covers a path wins.
    pub routes: Vec<Route>,
    /// For `https://` upstreams: the roots their certificates must chain to.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// `Host` sent upstream instead of the client's.
    pub upstream_host: Option<HeaderValue>,
    /// Path prefixes forwarded without a token, when the path matches at a
    /// `/` boundary and has no dot segment, `//`, `\`, `;` or encoded
    /// separator; a WebSocket upgrade is not public there.
    pub public_paths: Vec<String>,
    /// Path prefixes where a WebSocket upgrade is tunnelled without a
    /// token. Such a tunnel is still cut at the connection's
    /// authentication deadline and can be evicted, as any connection with
    /// no accepted token.
    pub public_websocket_paths: Vec<String>,
    /// Forward the client's `Authorization` header (normally removed: a
    /// bound token is worthless to the upstream).
    pub forward_token: bool,
    /// Names of the headers that tell the upstream who the verified
    /// client is.
    pub identity: IdentityHeaders,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are kept and
    /// appended to; from anyone else they are replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// Time to open a connection to the upstream (TLS included for
    /// `https://`).
    pub connect_timeout: Duration,
    /// Time the upstream has for its response head once the request body
    /// has been sent.
    pub response_timeout: Duration,
    /// Longest silence in a request or response body in flight, and how
    /// long an unused pooled connection is kept.
    pub idle_timeout: Duration,
    /// Idle keep-alive connections kept to each upstream (by each of the
    /// server's connection threads, when it has them).
    pub max_idle_connections: usize,
}

impl GatewayConfig {
    /// [`connect_timeout`](Self::connect_timeout) unless set.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// [`response_timeout`](Self::response_timeout) unless set.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
    /// [`idle_timeout`](Self::idle_timeout) unless set.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Defaults: nothing public, the token not forwarded, the default
    /// identity headers, no trusted proxy, 5 s to connect, 60 s for the
    /// response head, 60 s idle, 64 idle connections.
    pub fn new(upstream: Upstream) -> Self {
        GatewayConfig {
            upstream: Some(upstream),
            routes: Vec::new(),
            upstream_tls: None,
            upstream_host: None,
            public_paths: Vec::new(),
            public_websocket_paths: Vec::new(),
            forward_token: false,
            identity: IdentityHeaders::default(),
            trusted_proxies: Vec::new(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_idle_connections: 64,
        }
    }

    /// As [`GatewayConfig::new`] with these routes and no route for `/`.
    pub fn with_routes(routes: Vec<Route>) -> Self {
        let mut config = GatewayConfig::new(Upstream::Unix {
            path: std::path::PathBuf::new(),
        });
        config.upstream = None;
        config.routes = routes;
        config
    }

    /// Every route: [`routes`](Self::routes), and `/` to
    /// [`upstream`](Self::upstream) unless a route has that prefix.
    ///
    /// Refused besides what [`Table::new`] refuses: a public path that
    /// overlaps a route with rules (its requests would skip them), and an
    /// `https://` upstream without [`upstream_tls`](Self::upstream_tls).
    fn table(&self) -> Result<Table, BadRoutes> {
        let mut routes = self.routes.clone();
        if let Some(u) = &self.upstream {
            if !routes.iter().any(|r| r.prefix == "/") {
                routes.push(Route::new("/", u.clone()));
            }
        }
        let public = self.public_paths.iter().chain(&self.public_websocket_paths);
        for p in public {
            let over = routes.iter().find(|r| {
                r.has_rules() && (routes::covers(&r.prefix, p) || routes::covers(p, &r.prefix))
            });
            if let Some(r) = over {
                return Err(BadRoutes::PublicPathOverRules {
                    public: p.clone(),
                    route: r.prefix.clone(),
                });
            }
        }
        if self.upstream_tls.is_none() {
            if let Some(r) = routes
                .iter()
                .find(|r| matches!(r.upstream, Upstream::Https { .. }))
            {
                return Err(BadRoutes::NoUpstreamRoots(r.prefix.clone()));
            }
        }
        Table::new(routes)
    }
}

/// The upstream client, its connection pool and the settings; cloning
/// shares them.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    config: GatewayConfig,
    /// The routes in force, swapped whole by [`Gateway::set_routes`].
    routes: arc_swap::ArcSwap<RouteSet>,
    baseline: Option<zeroize::Zeroizing<Vec<u8>>>,
}

/// A route table with a pool for each route.
struct RouteSet {
    table: Table,
    /// The pool of each route of `table`, by index; routes to one upstream
    /// share one.
    pools: Vec<Arc<Pool>>,
    /// Each route's prefix, for the access line.
    prefixes: Vec<Arc<str>>,
}

impl RouteSet {
    /// `table`'s routes, each with a pool: one of `reuse` if it goes to
    /// that upstream (its connections stay), else a new one.
    fn new(table: Table, config: &GatewayConfig, reuse: &[Arc<Pool>]) -> RouteSet {
        let mut made: Vec<Arc<Pool>> = Vec::new();
        let pools = table
            .routes()
            .iter()
            .map(|r| {
                let known = made.iter().chain(reuse).find(|p| p.upstream == r.upstream);
                match known {
                    Some(p) => p.clone(),
                    None => {
                        let p = Arc::new(Pool::new(&r.upstream, config));
                        made.push(p.clone());
                        p
                    }
                }
            })
            .collect();
        let prefixes = table
            .routes()
            .iter()
            .map(|r| r.prefix.as_str().into())
            .collect();
        RouteSet {
            table,
            pools,
            prefixes,
        }
    }
}

/// The connections to one upstream.
struct Pool {
    upstream: Upstream,
    /// The authority an `h2c://` or `https://` upstream is sent
    /// (`:authority`, or `Host` over HTTP/1.1): `upstream_host` or the
    /// upstream's own. `None` for the others, which get the client's
    /// `Host`.
    authority: Option<http::uri::Authority>,
    connector: Connector,
    builder: hyper_util::client::legacy::Builder,
    /// The client of requests on a shared runtime, where tasks move
    /// between threads anyway.
    shared: UpstreamClient,
    /// On the server's connection threads, a client with its own
    /// connections per thread: an upstream connection's task runs on the
    /// thread that opened it, and a request from another thread would
    /// cross threads twice to use it.
    per_thread: thread_local::ThreadLocal<UpstreamClient>,
}

type UpstreamClient = Client<Connector, Reclaimable<RequestBody>>;

impl Pool {
    fn new(upstream: &Upstream, config: &GatewayConfig) -> Pool {
        let connector = Connector::new(
            upstream.clone(),
            config.upstream_tls.clone(),
            config.connect_timeout,
        );
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.max_idle_connections)
            .http2_only(matches!(upstream, Upstream::H2c { .. }))
            .timer(TokioTimer::new())
            // Each stream may buffer at most its own window of a response
            // its client does not read; the connection's window has room
            // for many such streams, so one slow client stalls only itself.
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(config.idle_timeout / 2)
            .http2_keep_alive_timeout(config.connect_timeout);
        let authority = match upstream {
            Upstream::H2c { authority } | Upstream::Https { authority } => Some(
                config
                    .upstream_host
                    .as_ref()
                    .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| authority.clone()),
            ),
            _ => None,
        };
        Pool {
            upstream: upstream.clone(),
            authority,
            shared: builder.build(connector.clone()),
            connector,
            builder,
            per_thread: thread_local::ThreadLocal::new(),
        }
    }

    /// The client for a request on this thread.
    fn client(&self) -> &UpstreamClient {
        if crate::serve::workers::on_connection_thread() {
            self.per_thread
                .get_or(|| self.builder.build(self.connector.clone()))
        } else {
            &self.shared
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.shared.routes.load().table.routes())
            .field("baseline", &self.shared.baseline.is_some())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway forwarding as `config` says; connections are opened on
    /// demand.
    pub fn new(config: GatewayConfig) -> Result<Self, BadRoutes> {
        Self::build(config, None)
    }

    /// Benchmarks only: a request whose bearer token equals `token`
    /// (compared in constant time) is forwarded as client `baseline`
    /// without binding, so a load run can measure what binding adds to
    /// the same proxy.
    pub fn with_baseline(config: GatewayConfig, token: &[u8]) -> Result<Self, BadRoutes> {
        Self::build(config, Some(zeroize::Zeroizing::new(token.to_vec())))
    }

    fn build(
        config: GatewayConfig,
        baseline: Option<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Result<Self, BadRoutes> {
        let table = config.table()?;
        let routes = RouteSet::new(table, &config, &[]);
        Ok(Gateway {
            shared: Arc::new(Shared {
                config,
                routes: arc_swap::ArcSwap::from_pointee(routes),
                baseline,
            }),
        })
    }

    /// Puts `routes` in force (with the `/` route of
    /// [`GatewayConfig::upstream`] unless one of them is for `/`): a
    /// request that has begun keeps the table it began with; connections
    /// to an upstream still routed to stay. A bad table changes nothing.
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<(), BadRoutes> {
        let mut config = self.shared.config.clone();
        config.routes = routes;
        let table = config.table()?;
        let old = self.shared.routes.load();
        let set = RouteSet::new(table, &self.shared.config, &old.pools);
        self.shared.routes.store(Arc::new(set));
        Ok(())
    }

    /// The service to serve: public paths straight to the proxy, every
    /// other request through `layer` first.
    pub fn service(&self, layer: &BindingLayer) -> GatewayService {
        let proxy = Proxy {
            shared: self.shared.clone(),
        };
        GatewayService {
            protected: layer.layer(proxy.clone()),
            proxy,
        }
    }

    /// One connection attempt to each upstream, within the connect
    /// timeout (what `/readyz` asks).
    pub(crate) async fn probe(&self) -> Result<(), upstream::ConnectError> {
        let set = self.shared.routes.load_full();
        let mut seen: Vec<&Upstream> = Vec::new();
        for pool in &set.pools {
            if !seen.contains(&&pool.upstream) {
                seen.push(&pool.upstream);
                pool.connector.connect().await.map(drop)?;
            }
        }
        Ok(())
    }

    /// `readiness` that also requires every upstream to accept a
    /// connection.
    pub fn readiness(&self, keystore: KeystoreHandle) -> Readiness {
        let gateway = self.clone();
        Readiness::new(keystore).with_probe(Box::new(move || {
            let gateway = gateway.clone();
            Box::pin(async move { gateway.probe().await.is_ok() })
        }))
    }

    /// The routes in force, longest prefix first, with the `/` route of
    /// [`GatewayConfig::upstream`] among them.
    pub fn routes(&self) -> Vec<Route> {
        self.shared.routes.load().table.routes().to_vec()
    }
}

/// True if `path` is under one of `prefixes` (a prefix ending in `/`
/// matches what follows it; one that does not matches itself and what
/// follows a `/`), and is plain enough that the upstream cannot read it as
/// another path: no `.` or `..` segment, no `//`, no backslash, no `;`, no
/// percent-encoded `.`, `/` or `\`. Anything else needs a token.
pub(crate) fn is_public(prefixes: &[String], path: &str) -> bool {
    let matched = prefixes
        .iter()
        .any(|p| match path.strip_prefix(p.as_str()) {
            Some(rest) => p.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        });
    matched && is_plain(path)
}

pub(crate) fn is_plain(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let encoded = ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e));
    let dots = path.split('/').any(|seg| seg == "." || seg == "..");
    !(encoded || dots || path.contains("//") || path.contains('\\') || path.contains(';'))
}

/// What [`Gateway::service`] gives: the router in front of the proxy.
#[derive(Clone)]
pub struct GatewayService {
    protected: BindingService<Proxy>,
    proxy: Proxy,
}

/// The future of every gateway request.
pub type GatewayFuture =
    Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for GatewayService {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = GatewayFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> GatewayFuture {
        let shared = &self.proxy.shared;
        let cfg = &shared.config;
        let path = req.uri().path();
        let set = shared.routes.load_full();
        let route = match set.table.lookup(path) {
            Lookup::Route(i) => Some(i),
            Lookup::NoRoute => None,
            Lookup::NotPlain => return answered(refused(Verdict::BadPath, None, &req)),
        };
        let public = if is_websocket_upgrade(&req) {
            is_public(&cfg.public_websocket_paths, path)
        } else {
            is_public(&cfg.public_paths, path)
                || route.is_some_and(|i| set.table.routes()[i].public && is_plain(path))
        };
        if let Some(index) = route {
            req.extensions_mut().insert(RouteChoice { set, index });
        }
        if public {
            return self.proxy.call(req);
        }
        if let Some(expected) = &shared.baseline {
            if static_bearer_accepted(expected, &req) {
                req.extensions_mut().insert(baseline_identity());
                let fut = self.proxy.call(req);
                return Box::pin(async move {
                    let mut resp = fut.await?;
                    resp.extensions_mut().insert(Outcome {
                        client_id: None,
                        form: None,
                        code: None,
                    });
                    Ok(resp)
                });
            }
        }
        Box::pin(self.protected.call(req))
    }
}

/// The identity a baseline request is forwarded with: the claims of a
/// `jwt-client bench` token (the echo app's baseline claims, base64url),
/// so both runs do the same proxy work.
fn baseline_identity() -> Identity {
    Identity {
        client_id: HeaderValue::from_static("baseline"),
        form: HeaderValue::from_static("static"),
        claims: HeaderValue::from_static(
            "eyJpc3MiOiJiYXNlbGluZSIsImF1ZCI6ImxvY2FsaG9zdCIsImlhdCI6MTc2NzIyNTYwMCwiZXhwIjoxNzY3MjI1NjYwLCJqdGkiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwicm9sZSI6ImJlbmNoIn0",
        ),
    }
}

/// The route the router matched, for the proxy behind the layer: in the
/// table it matched in, whatever a reload puts in force meanwhile.
#[derive(Clone)]
struct RouteChoice {
    set: Arc<RouteSet>,
    index: usize,
}

/// Why the gateway itself answered instead of the upstream.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// No route covers the path (404 `no_route`).
    NoRoute,
    /// A route covers it, and the verified client may not call it (403
    /// `forbidden`).
    Forbidden(routes::Denied),
    /// The path could be read as another by an upstream, and some route
    /// is not for `/` (400 `bad_path`).
    BadPath,
}

impl Verdict {
    /// The status, the body, the outcome logged, and the gRPC status a
    /// gRPC client reads it as (gRPC's own mapping of the HTTP status).
    const fn answer(self) -> (StatusCode, &'static [u8], &'static str, &'static str) {
        match self {
            Verdict::NoRoute => (
                StatusCode::NOT_FOUND,
                br#"{"error":"no_route"}"#,
                "no_route",
                "12",
            ),
            Verdict::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                br#"{"error":"forbidden"}"#,
                "forbidden",
                "7",
            ),
            Verdict::BadPath => (
                StatusCode::BAD_REQUEST,
                br#"{"error":"bad_path"}"#,
                "bad_path",
                "13",
            ),
        }
    }
}

/// The gateway's own answer for `verdict` on `req`'s route `prefix`.
fn refused<B>(
    verdict: Verdict,
    prefix: Option<Arc<str>>,
    req: &Request<B>,
) -> Response<GatewayBody> {
    let (status, body, outcome, grpc) = verdict.answer();
    let mut resp = Response::new(GatewayBody::from(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if crate::serve::layer::is_grpc(req.headers()) {
        crate::serve::layer::grpc_refusal(&mut resp, grpc, outcome);
    }
    resp.extensions_mut().insert(RouteReport {
        prefix,
        refused: Some(outcome),
        why: match verdict {
            Verdict::Forbidden(d) => Some(d.as_str()),
            _ => None,
        },
    });
    resp
}

fn answered(resp: Response<GatewayBody>) -> GatewayFuture {
    Box::pin(std::future::ready(Ok(resp)))
}

/// Forwards one request and its answer.
#[derive(Clone)]
pub(crate) struct Proxy {
    shared: Arc<Shared>,
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = GatewayFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> GatewayFuture {
        // A CONNECT would make the upstream connection a tunnel of the
        // client's choosing: nothing a reverse proxy should offer.
        if req.method() == Method::CONNECT {
            let mut resp = Response::new(GatewayBody::from(Bytes::from_static(
                br#"{"error":"method_not_allowed"}"#,
            )));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let Some(RouteChoice { set, index: i }) = req.extensions_mut().remove::<RouteChoice>()
        else {
            return answered(refused(Verdict::NoRoute, None, &req));
        };
        let route = &set.table.routes()[i];
        let prefix = set.prefixes[i].clone();
        // A public request has neither a verified token nor an identity;
        // a baseline one has an identity only, and no claims to check.
        let denied = match req.extensions().get::<Verified>() {
            Some(v) => route.allows(v).err(),
            None if req.extensions().get::<Identity>().is_some() && route.has_rules() => {
                Some(routes::Denied::Client)
            }
            None => None,
        };
        if let Some(why) = denied {
            return answered(refused(Verdict::Forbidden(why), Some(prefix), &req));
        }
        let pool = set.pools[i].clone();
        Box::pin(forward(self.shared.clone(), pool, prefix, req))
    }
}

async fn forward(
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    prefix: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, Infallible> {
    let mut resp = forward_on(&shared, &pool, req).await;
    resp.extensions_mut().insert(RouteReport {
        prefix: Some(prefix),
        refused: None,
        why: None,
    });
    Ok(resp)
}

async fn forward_on(
    shared: &Arc<Shared>,
    pool: &Pool,
    mut req: Request<Incoming>,
) -> Response<GatewayBody> {
    let start = Instant::now();
    let websocket = is_websocket_upgrade(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let guard = websocket
        .then(|| req.extensions().get::<ConnectionGuard>().cloned())
        .flatten();
    let upstream_req = match upstream_request(shared, pool, req, websocket) {
        Ok(r) => r,
        Err((why, cause)) => return failed(why, cause, start),
    };
    let resp = match exchange(shared, pool, upstream_req).await {
        Ok(r) => r,
        Err((why, cause)) => return failed(why, &cause, start),
    };
    downstream(&shared.config, resp, client_upgrade, guard, start)
        .unwrap_or_else(|(why, cause)| failed(why, cause, start))
}

/// The client's request as the upstream gets it: its identity (or none),
/// the header rules of [`headers`], `Host`, the upstream's URI, HTTP/1.1,
/// and a body whose trailers obey the same rules.
fn upstream_request(
    shared: &Arc<Shared>,
    pool: &Pool,
    mut req: Request<Incoming>,
    websocket: bool,
) -> Result<(Request<RequestBody>, Ended), (Failure, &'static str)> {
    let cfg = &shared.config;
    // A verified request goes with its identity or not at all: forwarded
    // without one, the upstream could take it for a public request. (Client
    // ids and base64url are always valid header values, so this holds by
    // construction; the check keeps it so.)
    let identity = match req.extensions_mut().remove::<Identity>() {
        Some(id) => Some(id),
        None => match req.extensions().get::<Verified>() {
            Some(v) => {
                Some(Identity::of(v).ok_or((Failure::Reset, "identity not a header value"))?)
            }
            None => None,
        },
    };
    let peer: Option<IpAddr> = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let (mut parts, body) = req.into_parts();
    let host =
        target_host(&parts).map_err(|()| (Failure::ClientHost, "Host differs from :authority"))?;
    crate::proxy::hop::strip_hop_by_hop(&mut parts.headers, websocket);
    let trusted = peer.is_some_and(|ip| cfg.trusted_proxies.iter().any(|n| n.contains(&ip)));
    let hop = Hop {
        peer: peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        trusted,
        host: host.as_ref(),
    };
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.header_value().clone());
    headers::own_request_headers(
        &mut parts.headers,
        &cfg.identity,
        identity.as_ref(),
        hop,
        cfg.forward_token,
        request_id.as_ref(),
    );
    headers::own_trailer_announcement(&mut parts.headers, &cfg.identity);
    // An HTTP/2-capable upstream is sent one fixed authority, as the
    // URI (`:authority`; hyper derives `Host` from it over HTTP/1.1): a
    // `Host` beside it could differ (RFC 9113 §8.3.1), and a pool keyed by
    // a client's Host would open a connection per name a client invents.
    match &pool.authority {
        Some(_) => {
            parts.headers.remove(HOST);
        }
        None => {
            if let Some(h) = cfg.upstream_host.clone().or(host) {
                parts.headers.insert(HOST, h);
            }
        }
    }
    // The gateway takes trailers whatever the client said: it passes them
    // to HTTP/2 clients, and to HTTP/1.1 clients that sent `TE: trailers`.
    parts
        .headers
        .insert(TE, HeaderValue::from_static("trailers"));
    let (scheme, upstream_authority) = pool.upstream.uri_base();
    let authority = pool.authority.clone().unwrap_or(upstream_authority);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| (Failure::Reset, "request URI"))?;
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    let (body, ended) = RequestBody::new(body, shared.clone());
    Ok((Request::from_parts(parts, body), ended))
}

/// Sends the request and waits for the upstream's response head, at most
/// the response timeout from the end of the request body.
async fn exchange(
    shared: &Shared,
    pool: &Pool,
    (req, ended): (Request<RequestBody>, Ended),
) -> Result<Response<Incoming>, (Failure, String)> {
    let Ended { sent, fault } = ended;
    let deadline = async {
        let _ = sent.await;
        tokio::time::sleep(shared.config.response_timeout).await;
    };
    let send = async {
        // hyper never gives an HTTP/2 request back, so keep what rebuilds
        // one: a stream the upstream did not process (a drain's GOAWAY,
        // REFUSED_STREAM) goes once more on a new connection.
        let kept = matches!(pool.upstream, Upstream::H2c { .. } | Upstream::Https { .. });
        let (req, kept) = if kept {
            let (req, kept) = Kept::keep(req);
            (req, Some(kept))
        } else {
            (req.map(Reclaimable::plain), None)
        };
        match pool.client().request(req).await {
            Err(e) if unprocessed(&e) => match kept.and_then(Kept::reclaim) {
                Some(again) => pool.client().request(again.map(Reclaimable::plain)).await,
                None => Err(e),
            },
            r => r,
        }
    };
    tokio::select! {
        r = send => r.map_err(|e| {
            // The client's body failing fails the upstream request too:
            // that is the client's fault, not the upstream's.
            let why = fault.get().copied().unwrap_or_else(|| Failure::of(&e));
            (why, error_chain(&e))
        }),
        _ = deadline => Err((Failure::ResponseTimeout, "no response head".to_owned())),
    }
}

/// The upstream's answer for the client: a `101` joined only as the
/// WebSocket the client asked for, hop-by-hop headers removed, the body
/// streamed with the idle timeout, and the report for the access line.
fn downstream(
    cfg: &GatewayConfig,
    mut resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    guard: Option<ConnectionGuard>,
    start: Instant,
) -> Result<Response<GatewayBody>, (Failure, &'static str)> {
    let status = resp.status();
    let latency = start.elapsed();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        // A 101 to anything else would open a tunnel whose bytes no rule
        // here reads.
        let client_upgrade = client_upgrade
            .filter(|_| switches_to_websocket(resp.headers()))
            .ok_or((
                Failure::BadUpgrade,
                "101 without a WebSocket asked and agreed",
            ))?;
        let limits = TunnelLimits {
            idle: guard
                .as_ref()
                .map_or(cfg.idle_timeout, |g| g.idle_timeout()),
            guard,
        };
        tokio::spawn(tunnel(
            client_upgrade,
            hyper::upgrade::on(&mut resp),
            limits,
        ));
    }
    let (mut parts, body) = resp.into_parts();
    crate::proxy::hop::strip_hop_by_hop(&mut parts.headers, switching);
    parts.extensions = http::Extensions::new();
    parts.extensions.insert(UpstreamReport {
        status: Some(status.as_u16()),
        latency,
        failure: None,
        cause: None,
    });
    let body = ProxyBody::streaming(body, cfg.idle_timeout);
    Ok(Response::from_parts(parts, body))
}

/// The host the client asked for. A target with an authority (HTTP/2's
/// `:authority`, HTTP/1.1's absolute form) names it, and `Host` is ignored
/// (RFC 9112 §3.2.2); an HTTP/2 `Host` that names another host makes the
/// request malformed (RFC 9113 §8.3.1). Otherwise `Host`.
fn target_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, ()> {
    let header = parts.headers.get(HOST);
    let Some(authority) = parts.uri.authority() else {
        return Ok(header.cloned());
    };
    let differs = header.is_some_and(|h| {
        !h.as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    });
    if differs && parts.version == Version::HTTP_2 {
        return Err(());
    }
    Ok(HeaderValue::from_str(authority.as_str()).ok())
}

/// The answer for `why` ([`Failure::answer`]), with the cause for the log.
fn failed(why: Failure, cause: &str, start: Instant) -> Response<GatewayBody> {
    let (status, body) = why.answer();
    let mut resp = Response::new(GatewayBody::from(Bytes::from_static(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.extensions_mut().insert(UpstreamReport {
        status: None,
        latency: start.elapsed(),
        failure: Some(why.as_str()),
        cause: Some(cause.into()),
    });
    resp
}

/// The client's request body on its way upstream: streamed frame by
/// frame, cut after the idle timeout, its trailers kept to
/// [`headers::request_trailer_allowed`], reporting when it has ended (the
/// response timeout runs from there) and, if it failed, how.
pub(crate) struct RequestBody {
    inner: Incoming,
    idle: Idle,
    shared: Arc<Shared>,
    sent: Option<tokio::sync::oneshot::Sender<()>>,
    fault: Arc<std::sync::OnceLock<Failure>>,
}

/// What the forwarding waits on besides the upstream: the end of the
/// client's body (the response timeout runs from there), and how it
/// failed, if it did.
struct Ended {
    sent: tokio::sync::oneshot::Receiver<()>,
    fault: Arc<std::sync::OnceLock<Failure>>,
}

impl RequestBody {
    fn new(inner: Incoming, shared: Arc<Shared>) -> (Self, Ended) {
        let (tx, sent) = tokio::sync::oneshot::channel();
        let fault = Arc::new(std::sync::OnceLock::new());
        let mut body = RequestBody {
            idle: Idle::new(shared.config.idle_timeout),
            shared,
            sent: Some(tx),
            fault: fault.clone(),
            inner,
        };
        if body.inner.is_end_stream() {
            body.done();
        }
        (body, Ended { sent, fault })
    }

    fn done(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = this.idle.poll_frame(Pin::new(&mut this.inner), cx);
        // hyper stops polling a body that says it has ended (one with a
        // Content-Length does after its last byte); report the end then,
        // rather than when hyper drops the body.
        let ended = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(e))) => {
                let why = if e.is::<crate::proxy::hop::BodyIdle>() {
                    Failure::ClientBodyTimeout
                } else {
                    Failure::ClientBody
                };
                let _ = this.fault.set(why);
                false
            }
            Poll::Pending => false,
        };
        if ended {
            this.done();
        }
        let names = &this.shared.config.identity;
        frame.map_ok(|f| clean_trailers(f, |n| headers::request_trailer_allowed(names, n)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The flow-control window of one stream to an HTTP/2 upstream (a
/// response body its client is slow to read waits here, at most this).
const H2_STREAM_WINDOW: u32 = 1 << 20;
/// The window of a whole HTTP/2 upstream connection: room for 64 stalled
/// streams before the others wait.
const H2_CONNECTION_WINDOW: u32 = 64 << 20;

/// A gateway response body: the upstream's, streamed with the idle
/// timeout, or one the gateway wrote.
pub(crate) type GatewayBody = ProxyBody;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_prefixes() {
        let p = vec!["/health".to_owned(), "/static/".to_owned()];
        assert!(is_public(&p, "/health"));
        assert!(is_public(&p, "/health/live"));
        assert!(!is_public(&p, "/healthz"));
        assert!(is_public(&p, "/static/app.js"));
        assert!(!is_public(&p, "/static"));
        assert!(!is_public(&p, "/api"));
        for sneaky in [
            "/health/../admin",
            "/health/%2e%2e/admin",
            "/health/%2E%2E/admin",
            "/static/..%2fadmin",
            "/static/%2fadmin",
            "/static//admin",
            "/health/./x",
            "/health\\..\\admin",
            "/static/..;/admin",
            "/static/%5c..%5cadmin",
        ] {
            assert!(!is_public(&p, sneaky), "{sneaky} treated as public");
        }
        assert!(!is_public(&[], "/"));
    }
}
