//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the listener,
//! for replicas behind a TCP (TLS passthrough) load balancer: without it
//! every client is the balancer's address, in the access log, the
//! gateway's `X-Forwarded-For` and the per-source admission budget.
//!
//! Only a peer in the trusted list may send a header, and it must: a
//! connection from elsewhere that starts with one, or a trusted one that
//! does not, is closed. A `LOCAL` header (a balancer's own health check,
//! HAProxy's `check-send-proxy`) keeps the balancer's address. The header
//! is read within the handshake deadline and is at most [`MAX_HEADER`]
//! bytes; ppp parses it. Bytes read past it (the start of the TLS
//! ClientHello) are handed to TLS by [`Prefixed`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use ipnet::IpNet;
use ppp::v2::{Addresses as V2Addresses, Command};
use ppp::{v1, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest header accepted, TLVs included (v1 is at most 107 bytes;
/// HAProxy's v2 with its usual TLVs fits well within this).
pub const MAX_HEADER: usize = 1024;

/// Which peers speak the PROXY protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Trusted(pub(crate) Vec<IpNet>);

impl Trusted {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Why a connection was closed before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// A trusted peer sent no header.
    Missing,
    /// A peer not in the trusted list sent one.
    Untrusted,
    /// Not a header ppp accepts (bad signature, version, family, address).
    Malformed,
    /// Longer than [`MAX_HEADER`].
    TooLong,
    /// The peer closed before the header ended.
    Truncated,
}

impl ProxyHeaderError {
    /// The stable code in the log and the metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProxyHeaderError::Missing => "proxy_header_missing",
            ProxyHeaderError::Untrusted => "proxy_header_untrusted",
            ProxyHeaderError::Malformed => "proxy_header_malformed",
            ProxyHeaderError::TooLong => "proxy_header_too_long",
            ProxyHeaderError::Truncated => "proxy_header_truncated",
        }
    }
}

impl std::fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Could these first bytes start a PROXY header? (v1 begins `PROXY `, v2
/// with `\r\n\r\n`; a TLS record begins 0x16.)
fn looks_like_header(first: u8) -> bool {
    first == b'P' || first == b'\r'
}

/// The connection's client address and the stream to run TLS on: from
/// `tcp`'s PROXY header when `peer` is trusted, else `peer` itself (after
/// checking it sent no header). An error closes the connection.
pub(crate) async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    trusted: &Trusted,
) -> Result<Accepted, (SocketAddr, ProxyHeaderError)> {
    if !trusted.contains(peer.ip()) {
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await.unwrap_or(0);
        if n == 1 && looks_like_header(first[0]) {
            return Err((peer, ProxyHeaderError::Untrusted));
        }
        return Ok(Accepted::Client(peer, Prefixed::new(Vec::new(), tcp)));
    }
    match read_proxy_header(tcp).await {
        Ok((Some(client), io)) => Ok(Accepted::Client(client, io)),
        // The balancer's own connection: a health check, which usually
        // closes here; anything it sends next is served as from the
        // balancer.
        Ok((None, io)) if io.prefix.is_empty() && !has_more(&io.inner).await => {
            Ok(Accepted::HealthCheck)
        }
        Ok((None, io)) => Ok(Accepted::Client(peer, io)),
        Err(e) => Err((peer, e)),
    }
}

/// What [`accept`] found.
pub(crate) enum Accepted {
    /// A connection to serve, from this client.
    Client(SocketAddr, Prefixed<TcpStream>),
    /// A balancer's `LOCAL` header and nothing after it: a health check
    /// that is over, not a failed handshake.
    HealthCheck,
}

/// Whether the peer sends anything more, or closes.
async fn has_more(tcp: &TcpStream) -> bool {
    let mut one = [0u8; 1];
    matches!(tcp.peek(&mut one).await, Ok(n) if n > 0)
}

/// Reads a PROXY protocol header (v1 or v2, at most [`MAX_HEADER`] bytes)
/// from the start of `io`, as a balancer sends it before TLS: the client
/// it names (`None` for `LOCAL` and `UNKNOWN`) and the stream that yields
/// the rest of `io`, the bytes read past the header first. For an accept
/// loop of one's own; [`serve`](crate::server::serve) calls it for the
/// peers in `ServerOptions::proxy_protocol_from`.
pub async fn read_proxy_header<IO: AsyncRead + Unpin>(
    mut io: IO,
) -> Result<(Option<SocketAddr>, Prefixed<IO>), ProxyHeaderError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 256];
        let room = (MAX_HEADER + 1 - buf.len()).min(chunk.len());
        let n = match io.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) if buf.is_empty() => return Err(ProxyHeaderError::Missing),
            Ok(0) | Err(_) => return Err(ProxyHeaderError::Truncated),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !looks_like_header(buf[0]) {
            return Err(ProxyHeaderError::Missing);
        }
        match parse(&buf) {
            Parsed::Incomplete if buf.len() > MAX_HEADER => return Err(ProxyHeaderError::TooLong),
            Parsed::Incomplete => continue,
            Parsed::Invalid => return Err(ProxyHeaderError::Malformed),
            Parsed::Header { len, client } => {
                if len > MAX_HEADER {
                    return Err(ProxyHeaderError::TooLong);
                }
                let rest = buf.split_off(len);
                return Ok((client, Prefixed::new(rest, io)));
            }
        }
    }
}

/// What ppp made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Invalid,
    /// A whole header of `len` bytes; `client` is `None` for `LOCAL` and
    /// for an address family other than TCP over IPv4/IPv6.
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
}

fn parse(buf: &[u8]) -> Parsed {
    let header = HeaderResult::parse(buf);
    if header.is_incomplete() {
        return Parsed::Incomplete;
    }
    match header {
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (Command::Local, _) => None,
                (Command::Proxy, V2Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (Command::Proxy, V2Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                // A PROXY command must say who the client is.
                (Command::Proxy, _) => return Parsed::Invalid,
            };
            Parsed::Header {
                len: h.len(),
                client,
            }
        }
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v1::Addresses::Unknown => None,
            };
            Parsed::Header {
                len: h.header.len(),
                client,
            }
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

pin_project_lite::pin_project! {
    /// A stream that first yields the bytes read past the PROXY header,
    /// then the stream's own.
    pub struct Prefixed<T> {
        prefix: Vec<u8>,
        at: usize,
        #[pin]
        inner: T,
    }
}

impl<T> Prefixed<T> {
    fn new(prefix: Vec<u8>, inner: T) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.at < this.prefix.len() {
            let rest = &this.prefix[*this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.at += n;
            if *this.at == this.prefix.len() {
                *this.prefix = Vec::new();
                *this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    fn tcp4() -> Vec<u8> {
        // 127.0.0.2:40000 -> 127.0.0.1:8443
        let mut a = vec![127, 0, 0, 2, 127, 0, 0, 1];
        a.extend_from_slice(&40000u16.to_be_bytes());
        a.extend_from_slice(&8443u16.to_be_bytes());
        a
    }

    #[test]
    fn v1_and_v2_give_the_client_and_their_length() {
        let line = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 8443\r\n";
        let mut with_tls = line.to_vec();
        with_tls.extend_from_slice(&[0x16, 0x03, 0x01]);
        let client = Some("127.0.0.2:40000".parse().unwrap());
        assert_eq!(
            parse(&with_tls),
            Parsed::Header {
                len: line.len(),
                client
            }
        );
        let h = v2(1, 0x11, &tcp4());
        let mut with_tls = h.clone();
        with_tls.push(0x16);
        assert_eq!(
            parse(&with_tls),
            Parsed::Header {
                len: h.len(),
                client
            }
        );
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                client: None
            }
        );
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_fail() {
        let h = v2(1, 0x11, &tcp4());
        for cut in 1..h.len() {
            assert_eq!(parse(&h[..cut]), Parsed::Incomplete, "{cut} bytes");
        }
        assert_eq!(parse(b"PROXY TCP4 127.0.0.2"), Parsed::Incomplete);
        assert_eq!(parse(b"PROXY TCP9 a b 1 2\r\n"), Parsed::Invalid);
        assert_eq!(
            parse(b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n"),
            Parsed::Invalid
        );
        let mut bad_version = h.clone();
        bad_version[12] = 0x31;
        assert_eq!(parse(&bad_version), Parsed::Invalid);
        // PROXY over a Unix family names no client address.
        assert_eq!(parse(&v2(1, 0x31, &[0u8; 216])), Parsed::Invalid);
    }

    #[test]
    fn trust_matches_ipv4_mapped_peers() {
        let t = Trusted(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.contains("10.0.0.1".parse().unwrap()));
        assert!(!Trusted::default().contains("127.0.0.1".parse().unwrap()));
    }
}
