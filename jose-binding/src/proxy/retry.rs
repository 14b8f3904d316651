//! Which failed request the sidecar may send again on another connection.
//!
//! hyper gives a request back only when its HTTP/1 connection closed
//! before writing it. Over HTTP/2 it never does, even when the server said
//! it did not process the stream: a `GOAWAY` (the drain of a rolling
//! restart) that arrived just before the request was queued, or that names
//! a last stream below it, or a `RST_STREAM` with `REFUSED_STREAM`. RFC 9113
//! §8.7 says such a request may be retried whatever its method. So the
//! sidecar keeps what it needs to rebuild one: its head, and its body
//! behind a [`Reclaimable`] that hands the body back if no byte of it was
//! ever taken.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use crate::serve::client::ClientBody;
use crate::serve::server::BoxError;

/// Whether `error` says the server never processed the request: only
/// these two, since a `GOAWAY` with an error code, a reset for another
/// reason or a broken connection may come after the server acted on it.
pub(super) fn unprocessed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
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

/// A request as it was handed to an HTTP/2 connection, kept so that it
/// can be rebuilt if the server did not process it.
pub(super) struct Kept {
    method: Method,
    headers: HeaderMap,
    body: Arc<Mutex<Slot>>,
}

struct Slot {
    body: Option<ClientBody>,
    taken: bool,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A poisoned lock only means a body's poll panicked; the slot itself
    // is still whole.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Kept {
    /// Keeps `req`'s head and puts its body behind a [`Reclaimable`].
    pub(super) fn keep(req: &mut Request<ClientBody>) -> Kept {
        let body = std::mem::take(req.body_mut());
        let slot = Arc::new(Mutex::new(Slot {
            body: Some(body),
            taken: false,
        }));
        *req.body_mut() = Reclaimable { slot: slot.clone() }.boxed_unsync();
        Kept {
            method: req.method().clone(),
            headers: req.headers().clone(),
            body: slot,
        }
    }

    /// The request again, if none of its body was taken (so none was
    /// sent); only for a request the server did not process
    /// ([`unprocessed`]). Its URI and token are set anew by the caller.
    pub(super) fn reclaim(self) -> Option<Request<ClientBody>> {
        let body = {
            let mut slot = lock(&self.body);
            if slot.taken {
                return None;
            }
            slot.body.take()?
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.headers_mut() = self.headers;
        Some(req)
    }
}

/// A body that can be taken back by its [`Kept`] until its first frame
/// is polled.
struct Reclaimable {
    slot: Arc<Mutex<Slot>>,
}

impl Body for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
    use http_body_util::Full;

    fn request(body: &'static str) -> Request<ClientBody> {
        let body = Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync();
        Request::post("/v1/claims")
            .header("x-app", "1")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_never_polled_comes_back_whole_with_its_head() {
        let mut req = request("payload");
        let kept = Kept::keep(&mut req);
        assert_eq!(req.body().size_hint().exact(), Some(7));
        assert!(!req.body().is_end_stream());
        drop(req);
        let again = kept.reclaim().expect("nothing was sent");
        assert_eq!(again.method(), Method::POST);
        assert_eq!(again.headers()["x-app"], "1");
        let body = again.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"payload");
    }

    #[tokio::test]
    async fn a_body_polled_once_is_not_sent_twice() {
        let mut req = request("payload");
        let kept = Kept::keep(&mut req);
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"payload");
        assert!(kept.reclaim().is_none());

        // Even an empty body, once polled, counts as taken.
        let mut req = request("");
        let kept = Kept::keep(&mut req);
        assert!(req.body().is_end_stream());
        let _ = req.into_body().collect().await.unwrap();
        assert!(kept.reclaim().is_none());
    }
}
