//! What every proxy in the tree shares (the gateway and the client
//! sidecar): hop-by-hop headers (RFC 9110 §7.6.1), removed between the two
//! connections a proxy joins; response bodies streamed with an idle
//! timeout; and the tunnel of an upgraded connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::server::BoxError;
use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

/// Removes hop-by-hop headers: those RFC 9110 §7.6.1 names, plus every
/// header the `Connection` header names. `Host` and `Content-Length` stay
/// even when named, since removing them would change where or how much
/// the upstream reads. With `upgrade`, the `Connection: upgrade` and
/// `Upgrade` pair is kept for an upgrade handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != HOST && name != CONTENT_LENGTH && !(upgrade && name == UPGRADE) {
            headers.remove(&name);
        }
    }
    // `Trailer` is end-to-end (RFC 9110 §6.6.2): an HTTP/1.1 client gets
    // the trailers it names.
    for name in [
        TE,
        TRANSFER_ENCODING,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// True if the request asks to switch protocols (HTTP/1.1 `Upgrade` with
/// `Connection: upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Both halves of an upgraded connection, copied until either side
/// closes; `hold` is kept meanwhile (the gateway holds the connection's
/// binding, so its place in the server's connection budget stays taken).
pub(crate) async fn tunnel<H>(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    hold: H,
) {
    let _held = hold;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// A body's allowance of silence: each frame restarts it.
pub(crate) struct Idle {
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    pub(crate) fn new(limit: Duration) -> Self {
        Idle {
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// The next frame of `body`; each frame restarts the allowance, and a
    /// body silent past it ends with [`BodyIdle`].
    pub(crate) fn poll_frame(
        &mut self,
        body: Pin<&mut Incoming>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if self.sleep.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(BodyIdle.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A body silent for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than the idle timeout")]
pub struct BodyIdle;

/// A proxied response body: the far side's, streamed with an idle
/// timeout, or one the proxy wrote itself.
pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Bytes(Option<Bytes>),
    Upstream(Incoming, Idle),
}

impl ProxyBody {
    pub(crate) fn streaming(body: Incoming, idle: Duration) -> Self {
        ProxyBody {
            kind: Kind::Upstream(body, Idle::new(idle)),
        }
    }
}

impl From<Bytes> for ProxyBody {
    fn from(b: Bytes) -> Self {
        ProxyBody {
            kind: Kind::Bytes(Some(b)),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body, idle) => idle.poll_frame(Pin::new(body), cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Bytes(b) => b.is_none(),
            Kind::Upstream(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Bytes(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Bytes(None) => SizeHint::with_exact(0),
            Kind::Upstream(body, _) => body.size_hint(),
        }
    }
}

/// A header map from name-value pairs, for the proxies' unit tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::header_map as map;
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = map(&[
            ("connection", "x-custom, keep-alive"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("host", "api.example"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut h, false);
        for gone in [
            "connection",
            "x-custom",
            "keep-alive",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["host"], "api.example");
        assert_eq!(h["trailer"], "x-checksum");
    }

    #[test]
    fn connection_cannot_remove_host_or_content_length() {
        let mut h = map(&[
            ("connection", "host, content-length"),
            ("host", "a"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            (h["host"].as_bytes(), h["content-length"].as_bytes()),
            (&b"a"[..], &b"3"[..])
        );
    }

    #[test]
    fn upgrade_pair_is_kept_for_an_upgrade() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }
}
