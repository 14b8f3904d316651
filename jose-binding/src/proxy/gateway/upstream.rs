//! The upstream: where the gateway forwards to (`http://`, `h2c://`,
//! `https://`, `unix:`), how it connects, and how a failure is named.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upstream {
    /// `http://host:port`: plain HTTP/1.1 over TCP.
    Http {
        /// Host and port (default 80).
        authority: Authority,
    },
    /// `h2c://host:port`: HTTP/2 over TCP without TLS (prior knowledge),
    /// what a gRPC server behind it speaks.
    H2c {
        /// Host and port (default 80).
        authority: Authority,
    },
    /// `https://host:port`: TLS 1.3, verified against the gateway's
    /// `--upstream-ca`; HTTP/2 if the upstream picks `h2` by ALPN, else
    /// HTTP/1.1.
    Https {
        /// Host and port (default 443); the host is the name verified.
        authority: Authority,
    },
    /// `unix:/path`: plain HTTP/1.1 over a Unix socket.
    Unix {
        /// The socket's absolute path.
        path: PathBuf,
    },
}

/// Why an upstream address does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("upstream {0:?}: use http://HOST:PORT, h2c://HOST:PORT, https://HOST:PORT or unix:/PATH (no path, query or user info)")]
pub struct BadUpstream(pub String);

impl std::str::FromStr for Upstream {
    type Err = BadUpstream;

    fn from_str(s: &str) -> Result<Self, BadUpstream> {
        let bad = || BadUpstream(without_user_info(s));
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            return Ok(Upstream::Unix { path: path.into() });
        }
        let uri: Uri = s.parse().map_err(|_| bad())?;
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        let path_ok = matches!(uri.path_and_query().map(|p| p.as_str()), None | Some("/"));
        if !path_ok || authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad());
        }
        match uri.scheme_str() {
            Some("http") => Ok(Upstream::Http { authority }),
            Some("h2c") => Ok(Upstream::H2c { authority }),
            Some("https") => Ok(Upstream::Https { authority }),
            _ => Err(bad()),
        }
    }
}

/// `s` with any user info (`user:password@`) replaced by `…`, for an
/// error message that may be logged.
fn without_user_info(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…{}", &s[..scheme_end], &s[at..])
        }
        _ => s.to_owned(),
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Http { authority } => write!(f, "http://{authority}"),
            Upstream::H2c { authority } => write!(f, "h2c://{authority}"),
            Upstream::Https { authority } => write!(f, "https://{authority}"),
            Upstream::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Upstream {
    /// The scheme and authority of the URIs sent upstream; a Unix socket
    /// has neither, so it is named `localhost` (the connector ignores it).
    pub(crate) fn uri_base(&self) -> (Scheme, Authority) {
        match self {
            Upstream::Http { authority } | Upstream::H2c { authority } => {
                (Scheme::HTTP, authority.clone())
            }
            Upstream::Https { authority } => (Scheme::HTTPS, authority.clone()),
            Upstream::Unix { .. } => (Scheme::HTTP, Authority::from_static("localhost")),
        }
    }
}

/// Why a connection to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[source] io::Error),
    #[error("TLS to the upstream: {0}")]
    Tls(#[source] io::Error),
}

/// Opens connections to the one upstream, whatever URI hyper's pool asks
/// for; the pool keys connections by that URI, which is always the same.
#[derive(Clone)]
pub(crate) struct Connector {
    upstream: Arc<Upstream>,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
}

impl Connector {
    /// `tls` is needed for an `https://` upstream, ignored otherwise.
    pub(crate) fn new(
        upstream: Upstream,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Self {
        Connector {
            upstream: Arc::new(upstream),
            tls: tls.map(TlsConnector::from),
            connect_timeout,
        }
    }

    /// One connection, within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<Stream, ConnectError> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    async fn open(&self) -> Result<Stream, ConnectError> {
        match &*self.upstream {
            Upstream::Http { authority } | Upstream::H2c { authority } => {
                Ok(Stream::Tcp(tcp(authority, 80).await?))
            }
            Upstream::Https { authority } => {
                let tcp = tcp(authority, 443).await?;
                let tls = self.tls.as_ref().ok_or_else(|| {
                    ConnectError::Tls(io::Error::other("no TLS configuration for https"))
                })?;
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
                let s = tls.connect(name, tcp).await.map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(s)))
            }
            Upstream::Unix { path } => Ok(Stream::Unix(
                UnixStream::connect(path).await.map_err(ConnectError::Io)?,
            )),
        }
    }
}

async fn tcp(authority: &Authority, default_port: u16) -> Result<TcpStream, ConnectError> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(default_port);
    let s = TcpStream::connect((host, port))
        .await
        .map_err(ConnectError::Io)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TokioIo<Stream>, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> ConnectFuture {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(TokioIo::new) })
    }
}

/// A connection to the upstream.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Connection for Stream {
    /// An `https://` upstream that chose `h2` by ALPN gets HTTP/2 from
    /// hyper's pool (one multiplexed connection); `h2c://` is HTTP/2 by
    /// the client's own setting.
    fn connected(&self) -> Connected {
        match self {
            Stream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(crate::serve::tls::ALPN_H2) => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How a forwarded request failed, as logged. The client sees only a
/// status and a fixed body ([`Failure::answer`]): 502 `bad_gateway` or 504
/// `gateway_timeout` when the upstream failed, 400 `bad_request` or 408
/// `request_timeout` when the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The upstream refused or dropped the connection attempt.
    Unreachable,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// No response head within the response timeout.
    ResponseTimeout,
    /// The connection failed after it was made: reset, closed early, or
    /// an answer that is not HTTP.
    Reset,
    /// The upstream answered `101` to a request that asked for no
    /// WebSocket, or switched to another protocol; nothing was joined.
    BadUpgrade,
    /// The client's request body broke off or was malformed (a bad chunk).
    ClientBody,
    /// The client's request body went silent past the idle timeout.
    ClientBodyTimeout,
    /// The request names two different hosts: an HTTP/2 `Host` header
    /// that differs from `:authority` (RFC 9113 §8.3.1).
    ClientHost,
}

impl Failure {
    /// Stable codes for logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Failure::Unreachable => "upstream_unreachable",
            Failure::ConnectTimeout => "upstream_connect_timeout",
            Failure::ResponseTimeout => "upstream_response_timeout",
            Failure::Reset => "upstream_reset",
            Failure::BadUpgrade => "upstream_bad_upgrade",
            Failure::ClientBody => "client_body_error",
            Failure::ClientBodyTimeout => "client_body_timeout",
            Failure::ClientHost => "client_host_mismatch",
        }
    }

    /// The status and the body the client gets.
    pub(crate) const fn answer(self) -> (u16, &'static [u8]) {
        match self {
            Failure::ConnectTimeout | Failure::ResponseTimeout => {
                (504, br#"{"error":"gateway_timeout"}"#)
            }
            Failure::Unreachable | Failure::Reset | Failure::BadUpgrade => {
                (502, br#"{"error":"bad_gateway"}"#)
            }
            Failure::ClientBody | Failure::ClientHost => (400, br#"{"error":"bad_request"}"#),
            Failure::ClientBodyTimeout => (408, br#"{"error":"request_timeout"}"#),
        }
    }

    /// What hyper's pool reported, named.
    pub(crate) fn of(e: &hyper_util::client::legacy::Error) -> Failure {
        if !e.is_connect() {
            return Failure::Reset;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(ConnectError::Timeout) = s.downcast_ref::<ConnectError>() {
                return Failure::ConnectTimeout;
            }
            source = s.source();
        }
        Failure::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        let u: Upstream = "http://127.0.0.1:3000".parse().unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:3000");
        let u: Upstream = "h2c://127.0.0.1:50051".parse().unwrap();
        assert!(matches!(u, Upstream::H2c { .. }));
        assert_eq!(u.to_string(), "h2c://127.0.0.1:50051");
        assert!(matches!(
            "https://api.internal".parse::<Upstream>().unwrap(),
            Upstream::Https { .. }
        ));
        assert_eq!(
            "unix:/run/app.sock".parse::<Upstream>().unwrap(),
            Upstream::Unix {
                path: "/run/app.sock".into()
            }
        );
        assert!(matches!(
            "http://[::1]:80/".parse::<Upstream>().unwrap(),
            Upstream::Http { .. }
        ));
        for bad in [
            "127.0.0.1:3000",
            "ftp://x",
            "h2c://x/path",
            "h2://x",
            "http://x/path",
            "http://x/?q",
            "http://user@x",
            "unix:run.sock",
            "",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
        let e = "https://ops:hunter2@api.internal"
            .parse::<Upstream>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("https://…@api.internal"), "{e}");
    }
}
