//! What every proxy in the tree shares (the gateway and the client
//! sidecar): hop-by-hop headers (RFC 9110 §7.6.1), removed between the two
//! connections a proxy joins; which upgrades may become tunnels (WebSocket
//! only); which fields may travel as trailers; response bodies streamed
//! with an idle timeout; and the tunnel of an upgraded connection, held to
//! the rules of the connection it took over.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::serve::server::{Activity, BoxError, ConnectionGuard};
use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Version};

/// `e` and its sources (`http2 error: …`), since hyper's own message
/// says only which protocol failed. For logs and the sidecar's 502 (the
/// app's own), never for a gateway client.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Removes hop-by-hop headers: those RFC 9110 §7.6.1 names, plus every
/// header the `Connection` header names, and `HTTP2-Settings` (it belongs
/// to an h2c upgrade, which no proxy here offers). `Host` and
/// `Content-Length` stay even when named, since removing them would change
/// where or how much the upstream reads. With `websocket`, the request is
/// a WebSocket handshake ([`is_websocket_upgrade`]) and goes on as
/// `Connection: upgrade` / `Upgrade: websocket`; without it, `Upgrade` goes.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    let named: Vec<HeaderName> = list_items(headers, CONNECTION)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in named {
        if name != HOST && name != CONTENT_LENGTH && !(websocket && name == UPGRADE) {
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
    headers.remove("http2-settings");
    if websocket {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    } else {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// True if `req` is a WebSocket opening handshake (RFC 6455 §4.1): an
/// HTTP/1.1 `GET` with `Connection: upgrade` and exactly one `Upgrade`
/// value, `websocket`. Only these become tunnels: any other upgrade (h2c
/// above all, whose tunnel would carry HTTP/2 requests with headers of the
/// client's choosing) is stripped and the request forwarded as plain
/// HTTP/1.1.
pub(crate) fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && names_token(req.headers(), CONNECTION, "upgrade")
        && only_websocket(req.headers())
}

/// True if a `101` response switches to WebSocket: `Upgrade: websocket`,
/// once, and nothing else. A `101` that is not is never joined.
pub(crate) fn switches_to_websocket(headers: &HeaderMap) -> bool {
    only_websocket(headers)
}

fn only_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket")),
        _ => false,
    }
}

/// True if a comma-separated header `name` lists `token` (ASCII case
/// folded).
fn names_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    list_items(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The items of a comma-separated header (`Connection`, `Trailer`), over
/// all its lines, trimmed; lines that are not text are skipped.
pub(crate) fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Fields that are never trailers here: hop-by-hop ones, and those RFC 9110
/// §6.5.1 says cannot be processed after the content: framing, routing,
/// authentication, request modifiers and response controls. A recipient
/// that merges trailers into the header section (several frameworks do)
/// would otherwise read them as if the sender's proxy had vetted them.
const NEVER_TRAILERS: &[&str] = &[
    // hop-by-hop (RFC 9110 §7.6.1) and the h2c upgrade's
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    // framing and content format
    "content-length",
    "content-encoding",
    "content-type",
    "content-range",
    "trailer",
    // routing
    "host",
    // authentication
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    // request modifiers
    "expect",
    "max-forwards",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "cache-control",
    "pragma",
    // response controls
    "age",
    "date",
    "expires",
    "location",
    "retry-after",
    "vary",
];

/// True if `name` may pass as a trailer field in either direction.
pub(crate) fn trailer_allowed(name: &HeaderName) -> bool {
    !NEVER_TRAILERS.contains(&name.as_str())
}

/// Removes from `fields` every name `allowed` refuses.
pub(crate) fn retain_fields(fields: &mut HeaderMap, allowed: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = fields.keys().filter(|n| !allowed(n)).cloned().collect();
    for name in doomed {
        fields.remove(name);
    }
}

/// A frame with its trailers (if it is one) kept to what `allowed` accepts.
pub(crate) fn clean_trailers(
    mut frame: Frame<Bytes>,
    allowed: impl Fn(&HeaderName) -> bool,
) -> Frame<Bytes> {
    if let Some(t) = frame.trailers_mut() {
        retain_fields(t, allowed);
    }
    frame
}

/// What a tunnel obeys besides its own two ends: a silence limit, and the
/// rules of the connection it took over, if it was served by
/// [`crate::serve::server::serve`].
pub(crate) struct TunnelLimits {
    /// Longest silence in both directions.
    pub(crate) idle: Duration,
    pub(crate) guard: Option<ConnectionGuard>,
}

/// Both halves of an upgraded connection, copied until either side
/// closes, the tunnel is silent for `limits.idle`, or the connection's
/// guard closes it (evicted, past its authentication deadline without an
/// accepted token, or the server stopped). The guard holds the
/// connection's place in the server's budgets for as long as it lives.
pub(crate) async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    limits: TunnelLimits,
) {
    let closed = async {
        match &limits.guard {
            Some(g) => g.closed().await,
            None => std::future::pending().await,
        }
    };
    let activity = Activity::new();
    let run = async {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut c = Watched::new(TokioIo::new(client), &activity);
        let mut u = Watched::new(TokioIo::new(upstream), &activity);
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    };
    tokio::select! {
        _ = run => {}
        _ = activity.idle_for(limits.idle, || false) => match &limits.guard {
            Some(g) => g.idle(),
            None => tracing::debug!("tunnel closed: silent past the idle timeout"),
        },
        _ = closed => {}
    }
}

/// An IO half whose every byte read or written counts as activity.
struct Watched<'a, T> {
    inner: T,
    activity: &'a Activity,
}

impl<'a, T> Watched<'a, T> {
    fn new(inner: T, activity: &'a Activity) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
pub(crate) struct BodyIdle;

/// A proxied response body: the far side's, streamed with an idle
/// timeout and its trailers kept to the allow-list, or one the proxy
/// wrote itself.
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
    /// An empty body is at its end from the start, so HTTP/2 ends the
    /// stream with the head: a gRPC "trailers-only" answer must.
    fn from(b: Bytes) -> Self {
        ProxyBody {
            kind: Kind::Bytes((!b.is_empty()).then_some(b)),
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
            // Trailers obey the same rules as headers (RFC 9110 §6.5.1).
            Kind::Upstream(body, idle) => idle
                .poll_frame(Pin::new(body), cx)
                .map_ok(|f| clean_trailers(f, trailer_allowed)),
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

    fn request(method: Method, pairs: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().method(method).body(()).unwrap();
        *r.headers_mut() = map(pairs);
        r
    }

    #[test]
    fn only_a_websocket_get_is_an_upgrade() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert!(is_websocket_upgrade(&request(Method::GET, &ws)));
        for not in [
            request(Method::POST, &ws),
            request(
                Method::GET,
                &[("connection", "upgrade"), ("upgrade", "h2c")],
            ),
            request(
                Method::GET,
                &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
            ),
            request(
                Method::GET,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "h2c"),
                ],
            ),
            request(Method::GET, &[("upgrade", "websocket")]),
        ] {
            assert!(!is_websocket_upgrade(&not), "{:?}", not.headers());
        }
        let mut h2 = request(Method::GET, &ws);
        *h2.version_mut() = Version::HTTP_2;
        assert!(!is_websocket_upgrade(&h2));
    }

    #[test]
    fn a_websocket_handshake_keeps_its_pair_and_nothing_else_does() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "WebSocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        // Even when `Connection` does not name it.
        let mut h = map(&[("http2-settings", "AAMAAABkAAQAAP__")]);
        strip_hop_by_hop(&mut h, true);
        assert!(!h.contains_key("http2-settings"));
    }

    #[test]
    fn a_101_joins_only_if_it_switches_to_websocket() {
        assert!(switches_to_websocket(&map(&[("upgrade", "websocket")])));
        assert!(!switches_to_websocket(&map(&[("upgrade", "h2c")])));
        assert!(!switches_to_websocket(&map(&[])));
    }

    #[test]
    fn trailers_lose_what_only_a_header_section_may_carry() {
        let frame = Frame::trailers(map(&[
            ("x-checksum", "5d41"),
            ("grpc-status", "0"),
            ("content-length", "9"),
            ("transfer-encoding", "chunked"),
            ("host", "evil"),
            ("authorization", "Bearer x"),
            ("set-cookie", "a=b"),
            ("connection", "close"),
            ("http2-settings", "AAMA"),
        ]));
        let t = clean_trailers(frame, trailer_allowed)
            .into_trailers()
            .unwrap();
        let mut kept: Vec<_> = t.keys().map(|n| n.as_str()).collect();
        kept.sort();
        assert_eq!(kept, ["grpc-status", "x-checksum"]);
    }
}
