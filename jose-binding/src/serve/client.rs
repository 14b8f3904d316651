//! The client side of the binding: one TLS 1.3 connection, keys derived once
//! from its EKM, a fresh token for every request (PROTOCOL.md §6).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::protocol::client_id::ClientId;
use crate::protocol::error::ErrorCode;
use crate::protocol::issuer::{IssueError, Issuer};
use crate::protocol::schedule::{Fingerprint, RootKey, RootKeyError, SubKeys};
use crate::protocol::token::Form;
use crate::serve::tls::{self, TlsError};

/// Largest response body read (the echo answer is small).
const MAX_RESPONSE: usize = 1 << 20;

/// Where to connect: parsed from `https://host[:port]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host as dialled, IPv6 without brackets.
    pub host: String,
    /// Port dialled; 443 when the URL gives none.
    pub port: u16,
    /// `host:port` as it goes in `Host` / `:authority`.
    pub authority: String,
}

/// Why a bound connection or a request on it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `https://host[:port]` with a host, or the host is not
    /// a valid TLS server name.
    #[error("bad server URL {0:?}: expected https://host[:port]")]
    Url(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Host and port dialled.
        addr: String,
        /// The error from the socket.
        source: std::io::Error,
    },
    /// The TLS 1.3 handshake failed: no TLS 1.3, a certificate the roots
    /// do not accept, a wrong name.
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// Host and port dialled.
        addr: String,
        /// rustls' error, as an I/O error.
        source: std::io::Error,
    },
    /// A step took longer than [`ClientSetup::timeout`]; the text names it
    /// (TCP connect, TLS handshake, PRK computation, HTTP exchange).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Building the TLS configuration or exporting the EKM failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The root key could not compute the PRK (a TPM unavailable or
    /// refusing), or the task computing it failed.
    #[error("root key: {0}")]
    RootKey(#[from] RootKeyError),
    /// The application's claims could not make a token.
    #[error("claims: {0}")]
    Issue(#[from] IssueError),
    /// The HTTP handshake or exchange failed, the answer's body was over
    /// 1 MiB, or the token or request could not be built.
    #[error("HTTP: {0}")]
    Http(String),
}

impl Target {
    /// Parses `https://host[:port]`; any other scheme is refused.
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = || ClientError::Url(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        let host = auth
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad());
        }
        let port = auth.port_u16().unwrap_or(443);
        Ok(Target {
            authority: format!("{}:{port}", auth.host()),
            host,
            port,
        })
    }
}

/// Which HTTP versions to offer by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HttpVersion {
    /// Offer h2 and http/1.1; the server picks.
    #[default]
    Auto,
    /// Offer http/1.1 only.
    Http1,
    /// Offer h2 only.
    Http2,
}

impl HttpVersion {
    /// The ALPN protocol ids to offer, preferred first.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            HttpVersion::Auto => &[tls::ALPN_H2, tls::ALPN_HTTP11],
            HttpVersion::Http1 => &[tls::ALPN_HTTP11],
            HttpVersion::Http2 => &[tls::ALPN_H2],
        }
    }
}

enum Sender {
    H1(http1::SendRequest<ClientBody>),
    H2(http2::SendRequest<ClientBody>),
}

/// The body type on the wire: any body, boxed, so a request can stream.
pub type ClientBody = UnsyncBoxBody<Bytes, crate::serve::server::BoxError>;

/// The server's answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `WWW-Authenticate` header, when present and visible ASCII.
    pub www_authenticate: Option<String>,
    /// The whole body (at most 1 MiB).
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The §7 code of a 401, from the JSON body; `None` for a body that
    /// names no §7 code.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.json()?.get("error")?.as_str()?)
    }
}

/// One bound TLS connection.
pub struct BoundConnection {
    sender: Sender,
    issuer: Arc<Issuer>,
    target: Target,
    ekm_fp: Fingerprint,
    timeout: Duration,
}

impl std::fmt::Debug for BoundConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundConnection")
            .field("target", &self.target.authority)
            .field("h2", &self.is_h2())
            .field("ekm_fp", &self.ekm_fp)
            .finish_non_exhaustive()
    }
}

/// Everything a connection needs besides the target.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientSetup {
    /// The TLS configuration; [`ClientSetup::new`] makes it TLS 1.3 only,
    /// with its roots and ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// The client's id (`kid` and `iss`).
    pub client_id: ClientId,
    /// The client's root key; its PRK step runs off the async threads,
    /// since a TPM blocks.
    pub root_key: Arc<dyn RootKey>,
    /// `aud`; default: the host dialled.
    pub audience: Option<String>,
    /// `exp - iat` of every token (default 60).
    pub ttl_secs: u64,
    /// Limit on each step: TCP connect, TLS handshake, PRK computation and
    /// each HTTP exchange (default 10 s).
    pub timeout: Duration,
    /// The local address to connect from (default: the system's choice),
    /// for a host with several.
    pub local_address: Option<std::net::IpAddr>,
}

impl ClientSetup {
    /// A setup trusting `roots` and offering `version`, with the default
    /// audience, lifetime and timeout.
    pub fn new(
        roots: rustls::RootCertStore,
        version: HttpVersion,
        client_id: ClientId,
        root_key: Arc<dyn RootKey>,
    ) -> Result<Self, TlsError> {
        Ok(ClientSetup {
            tls: Arc::new(tls::client_config(roots, version.alpn())?),
            client_id,
            root_key,
            audience: None,
            ttl_secs: crate::protocol::issuer::DEFAULT_TTL_SECS,
            timeout: Duration::from_secs(10),
            local_address: None,
        })
    }
}

impl ClientSetup {
    /// A setup that accepts only a server matching an invite's `pin`
    /// instead of trusting roots (the enrolment connection, PROTOCOL.md
    /// §10), and where it records the certificate it matched.
    pub fn pinned(
        pin: crate::invite::Pin,
        version: HttpVersion,
        client_id: ClientId,
        root_key: Arc<dyn RootKey>,
    ) -> Result<(Self, crate::pin::Matched), TlsError> {
        let (tls, matched) = crate::pin::pinned_client_config_seen(pin, version.alpn())?;
        let mut setup =
            ClientSetup::new(rustls::RootCertStore::empty(), version, client_id, root_key)?;
        setup.tls = Arc::new(tls);
        Ok((setup, matched))
    }
}

/// A TCP connection to `target`, from `local` when given (to the first of
/// the target's addresses of the same family).
async fn tcp_connect(
    target: &Target,
    local: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect((target.host.as_str(), target.port)).await;
    };
    let remote = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                "no address of the local address's family",
            )
        })?;
    let socket = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    socket.connect(remote).await
}

impl BoundConnection {
    /// Connects, completes TLS 1.3, exports the EKM and derives the subkeys.
    pub async fn connect(target: &Target, setup: &ClientSetup) -> Result<Self, ClientError> {
        let addr = format!("{}:{}", target.host, target.port);
        let timeout = setup.timeout;
        let tcp = tokio::time::timeout(timeout, tcp_connect(target, setup.local_address))
            .await
            .map_err(|_| ClientError::Timeout("TCP connect"))?
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| ClientError::Url(target.host.clone()))?;
        let tls = tokio::time::timeout(
            timeout,
            TlsConnector::from(setup.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| ClientError::Timeout("TLS handshake"))?
        .map_err(|source| ClientError::Handshake { addr, source })?;
        let (_, conn) = tls.get_ref();
        let ekm = tls::export_ekm(conn)?;
        let ekm_fp = ekm.fingerprint();
        let h2 = conn.alpn_protocol() == Some(tls::ALPN_H2);
        // A TPM-held root key blocks for the TPM command (or for as long as a
        // broken TPM hangs): run it off the async threads, under the timeout.
        let (root, id) = (setup.root_key.clone(), setup.client_id.clone());
        let derive = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let keys = SubKeys::derive(root.as_ref(), &ekm, &id);
            metrics::histogram!(crate::serve::metrics::KEY_SCHEDULE_DURATION, "key" => root.kind())
                .record(start.elapsed().as_secs_f64());
            keys
        });
        let keys = tokio::time::timeout(timeout, derive)
            .await
            .map_err(|_| ClientError::Timeout("root key (PRK) computation"))?
            .map_err(|_| {
                ClientError::RootKey(RootKeyError::Unavailable(
                    "key derivation task failed".into(),
                ))
            })??;
        let audience = setup
            .audience
            .clone()
            .unwrap_or_else(|| target.host.clone());
        let issuer =
            Arc::new(Issuer::new(setup.client_id.clone(), audience, keys).with_ttl(setup.ttl_secs));
        let io = TokioIo::new(tls);
        let http_err = |e: hyper::Error| ClientError::Http(e.to_string());
        let sender = if h2 {
            let (s, c) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(http_err)?;
            tokio::spawn(async move {
                let _ = c.await;
            });
            Sender::H2(s)
        } else {
            let (s, c) = http1::handshake(io).await.map_err(http_err)?;
            // With upgrades, so a 101 hands the connection over (the
            // sidecar tunnels an app's WebSocket through it).
            tokio::spawn(async move {
                let _ = c.with_upgrades().await;
            });
            Sender::H1(s)
        };
        Ok(BoundConnection {
            sender,
            issuer,
            target: target.clone(),
            ekm_fp,
            timeout,
        })
    }

    /// Whether the server chose h2 by ALPN.
    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Fingerprints of this connection's EKM and subkeys (never the keys).
    pub fn fingerprints(&self) -> (Fingerprint, Fingerprint, Fingerprint) {
        let keys = self.issuer.subkeys();
        (self.ekm_fp, keys.sig.fingerprint(), keys.enc.fingerprint())
    }

    /// The issuer holding this connection's subkeys.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// A fresh token of `form` for `claims`, bound to this connection.
    pub fn token<C>(&self, form: Form, claims: &C) -> Result<String, ClientError>
    where
        C: serde::Serialize + ?Sized,
    {
        Ok(self.issuer.issue(form, claims)?)
    }

    /// `POST /v1/claims` with a fresh token.
    pub async fn send<C>(&mut self, form: Form, claims: &C) -> Result<Reply, ClientError>
    where
        C: serde::Serialize + ?Sized,
    {
        let token = self.token(form, claims)?;
        self.send_token(&token).await
    }

    /// `POST /v1/claims` with the given token (for replay demonstrations).
    pub async fn send_token(&mut self, token: &str) -> Result<Reply, ClientError> {
        self.request(Method::POST, "/v1/claims", Some(token)).await
    }

    /// Any request on this connection.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut req = self.request_builder(method, path);
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, bearer(t)?);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        self.send_request(req).await
    }

    /// A request builder with the URI and `Host` this connection needs.
    pub fn request_builder(&self, method: Method, path: &str) -> http::request::Builder {
        request_builder(&self.sender, &self.target, method, path)
    }

    /// Sends a request as built; reads at most 1 MiB of the answer.
    pub async fn send_request(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        let http_err = |e: hyper::Error| ClientError::Http(e.to_string());
        let exchange = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(http_err)?;
                    s.send_request(boxed(req)).await.map_err(http_err)?
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(http_err)?;
                    s.send_request(boxed(req)).await.map_err(http_err)?
                }
            };
            let status = resp.status().as_u16();
            let www_authenticate = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status,
                www_authenticate,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout("HTTP exchange"))?
    }
}

/// A bound connection as a tower service over hyper, for [`crate::serve::stamp`]:
/// it sends requests as given (build them with
/// [`BoundSender::request_builder`]) and answers hyper's response.
pub struct BoundSender {
    sender: Sender,
    target: Target,
}

impl std::fmt::Debug for BoundSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundSender")
            .field("target", &self.target.authority)
            .finish_non_exhaustive()
    }
}

impl BoundConnection {
    /// The connection as a tower service, and its issuer: put a
    /// [`crate::serve::stamp::StampLayer`] made from the issuer on the service, and
    /// every request gets a fresh token bound to this connection.
    pub fn into_service(self) -> (BoundSender, Arc<Issuer>) {
        let sender = BoundSender {
            sender: self.sender,
            target: self.target,
        };
        (sender, self.issuer)
    }
}

impl BoundSender {
    /// A request builder with the URI and `Host` this connection needs.
    pub fn request_builder(&self, method: Method, path: &str) -> http::request::Builder {
        request_builder(&self.sender, &self.target, method, path)
    }

    /// Whether the server chose h2 by ALPN.
    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// True once the connection is gone: the server closed it, or it broke.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends `req` (after `poll_ready`). If it fails before the request
    /// was written, the request comes back in [`Unsent`], so a caller can
    /// send it on another connection (with a token of that connection).
    pub fn try_send(
        &mut self,
        req: Request<ClientBody>,
    ) -> impl std::future::Future<Output = Result<http::Response<Incoming>, Unsent>> + Send + 'static
    {
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            match &mut self.sender {
                Sender::H1(s) => Box::pin(s.try_send_request(req)),
                Sender::H2(s) => Box::pin(s.try_send_request(req)),
            };
        async move {
            fut.await.map_err(|mut e| Unsent {
                request: e.take_message(),
                error: e.into_error(),
            })
        }
    }
}

/// A request a connection failed to deliver, and the request itself when
/// it was never written (so it can go elsewhere).
#[derive(Debug)]
pub struct Unsent {
    /// Why the connection failed.
    pub error: hyper::Error,
    /// The request, when hyper gives it back unwritten.
    pub request: Option<Request<ClientBody>>,
}

/// The future of a [`BoundSender`] call.
pub type SendFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>,
>;

/// A request with its body boxed for the wire.
fn boxed<B>(req: Request<B>) -> Request<ClientBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::serve::server::BoxError>,
{
    req.map(|b| b.map_err(Into::into).boxed_unsync())
}

/// Any body streams: a request is sent as its body yields frames.
impl<B> tower_service::Service<Request<B>> for BoundSender
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::serve::server::BoxError>,
{
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = SendFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), hyper::Error>> {
        match &mut self.sender {
            Sender::H1(s) => s.poll_ready(cx),
            Sender::H2(s) => s.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<B>) -> SendFuture {
        match &mut self.sender {
            Sender::H1(s) => Box::pin(s.send_request(boxed(req))),
            Sender::H2(s) => Box::pin(s.send_request(boxed(req))),
        }
    }
}

/// The URI and `Host` a request needs: origin-form and `Host` on HTTP/1.1,
/// absolute-form (`:authority`) on HTTP/2.
fn request_builder(
    sender: &Sender,
    target: &Target,
    method: Method,
    path: &str,
) -> http::request::Builder {
    match sender {
        Sender::H1(_) => Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &target.authority),
        Sender::H2(_) => Request::builder()
            .method(method)
            .uri(format!("https://{}{}", target.authority, path)),
    }
}

/// `Bearer <token>`, marked sensitive: a bearer token must not enter HPACK's
/// dynamic table (RFC 7541 §7.1.3), so HTTP/2 sends it as a never-indexed
/// literal.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| ClientError::Http("token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_never_indexed() {
        let v = bearer("abc.def.ghi").unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer abc.def.ghi");
        assert!(v.is_sensitive());
        assert!(bearer("a\nb").is_err());
    }

    #[test]
    fn target_parsing() {
        let t = Target::parse("https://localhost:8443").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 8443));
        let t = Target::parse("https://[::1]:9000/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("::1", "[::1]:9000")
        );
        assert_eq!(Target::parse("https://example.org").unwrap().port, 443);
        assert!(Target::parse("http://localhost:1").is_err());
        assert!(Target::parse("localhost:1").is_err());
    }
}
