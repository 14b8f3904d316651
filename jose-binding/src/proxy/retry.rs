//! Which failed request may be sent again on another connection: the
//! sidecar's to the server, and the gateway's to an HTTP/2 upstream.
//!
//! hyper gives a request back only when its HTTP/1 connection closed
//! before writing it. Over HTTP/2 it never does, even when the peer said
//! it did not process the stream: a `GOAWAY` (the drain of a rolling
//! restart) that arrived just before the request was queued, or that names
//! a last stream below it, or a `RST_STREAM` with `REFUSED_STREAM`. RFC 9113
//! §8.7 says such a request may be retried whatever its method. So the
//! proxies keep what they need to rebuild one: its head, and its body
//! behind a [`Reclaimable`] that hands the body back if no byte of it was
//! ever taken.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Request, Uri, Version};
use hyper::body::{Body, Frame, SizeHint};

/// Whether `error` (or one of its causes) says the peer never processed
/// the request: only these two, since a `GOAWAY` with an error code, a
/// reset for another reason or a broken connection may come after the
/// peer acted on it.
pub(crate) fn unprocessed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            let graceful_goaway = e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR);
            let refused = e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM);
            return e.is_remote() && (graceful_goaway || refused);
        }
        source = e.source();
    }
    false
}

/// A request as it was handed to a connection, kept so that it can be
/// rebuilt if the peer did not process it.
pub(crate) struct Kept<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Arc<Mutex<Slot<B>>>,
}

struct Slot<B> {
    body: Option<B>,
    taken: bool,
}

fn lock<B>(slot: &Mutex<Slot<B>>) -> MutexGuard<'_, Slot<B>> {
    // A poisoned lock only means a body's poll panicked; the slot itself
    // is still whole.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<B> Kept<B> {
    /// `req` with its body behind a [`Reclaimable`], and what rebuilds it.
    pub(crate) fn keep(req: Request<B>) -> (Request<Reclaimable<B>>, Kept<B>) {
        let (parts, body) = req.into_parts();
        let slot = Arc::new(Mutex::new(Slot {
            body: Some(body),
            taken: false,
        }));
        let kept = Kept {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: slot.clone(),
        };
        (Request::from_parts(parts, Reclaimable { slot }), kept)
    }

    /// The request again, if none of its body was taken (so none was
    /// sent); only for a request the peer did not process
    /// ([`unprocessed`]). Its extensions are gone; the sidecar sets its
    /// URI and token anew for the next connection.
    pub(crate) fn reclaim(self) -> Option<Request<B>> {
        let body = {
            let mut slot = lock(&self.body);
            if slot.taken {
                return None;
            }
            slot.body.take()?
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        Some(req)
    }
}

/// A body that its [`Kept`] can take back until its first frame is
/// polled.
pub(crate) struct Reclaimable<B> {
    slot: Arc<Mutex<Slot<B>>>,
}

impl<B> Reclaimable<B> {
    /// `body` behind the wrapper, with nothing kept to take it back: for
    /// a connection that gives unsent requests back itself (HTTP/1).
    #[cfg(feature = "gateway")]
    pub(crate) fn plain(body: B) -> Self {
        Reclaimable {
            slot: Arc::new(Mutex::new(Slot {
                body: Some(body),
                taken: false,
            })),
        }
    }
}

impl<B: Body + Unpin> Body for Reclaimable<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut slot = lock(&self.slot);
        slot.taken = true;
        match slot.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.slot)
            .body
            .as_ref()
            .is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.slot)
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    fn request(body: &'static str) -> Request<Full<Bytes>> {
        Request::post("/v1/claims")
            .header("x-app", "1")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_never_polled_comes_back_whole_with_its_head() {
        let (req, kept) = Kept::keep(request("payload"));
        assert_eq!(req.body().size_hint().exact(), Some(7));
        assert!(!req.body().is_end_stream());
        drop(req);
        let again = kept.reclaim().expect("nothing was sent");
        assert_eq!(again.method(), Method::POST);
        assert_eq!(again.uri(), "/v1/claims");
        assert_eq!(again.headers()["x-app"], "1");
        let body = again.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"payload");
    }

    #[tokio::test]
    async fn a_body_polled_once_is_not_sent_twice() {
        let (req, kept) = Kept::keep(request("payload"));
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"payload");
        assert!(kept.reclaim().is_none());

        // Even an empty body, once polled, counts as taken.
        let (req, kept) = Kept::keep(request(""));
        assert!(req.body().is_end_stream());
        let _ = req.into_body().collect().await.unwrap();
        assert!(kept.reclaim().is_none());
    }
}
