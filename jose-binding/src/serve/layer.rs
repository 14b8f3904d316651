//! The verifier as a tower [`Layer`] any hyper service can mount, an axum
//! `Router` included.
//!
//! The layer is mounted once. What is particular to a TLS connection, its
//! [`ConnectionBinding`] (the verifier made from that connection's EKM,
//! shared by every request on it), reaches the layer as a request extension
//! put there by the acceptor ([`crate::serve::server::serve`], or your own accept
//! loop with [`Binding::connection`]). Verified claims reach the inner
//! service as a [`Verified`] request extension; refused requests never reach
//! it and get the §7 answer (401, `WWW-Authenticate`, JSON body).
//!
//! # Example
//!
//! An axum app behind one `.layer()`, served over TLS 1.3 with the
//! repository's fixtures, and a bound client calling it:
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{routing::get, Extension, Router};
//! use http::Method;
//! use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
//! use jose_binding::keystore::KeystoreHandle;
//! use jose_binding::layer::Binding;
//! use jose_binding::server::{serve, ServerOptions};
//! use jose_binding::{tls, ClientId, Form, Keystore, Policy, SoftwareRootKey, Verified};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fixtures = std::path::Path::new("../fixtures");
//! // The server: the keystore and policy, once.
//! let keystore = Keystore::load(&fixtures.join("keystore.toml"))?;
//! let binding = Binding::new(KeystoreHandle::new(keystore), Policy::default());
//! // Every route behind the binding: the handler gets the verified claims.
//! let app = Router::new()
//!     .route(
//!         "/whoami",
//!         get(|Extension(v): Extension<Verified>| async move { v.client_id.to_string() }),
//!     )
//!     .layer(binding.layer());
//! let tls_config = tls::server_config(
//!     tls::load_certs(&fixtures.join("server.pem"))?,
//!     tls::load_key(&fixtures.join("server.key"))?,
//! )?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let port = listener.local_addr()?.port();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(
//!     listener,
//!     Arc::new(tls_config),
//!     binding,
//!     app,
//!     ServerOptions::default(),
//!     async { let _ = stopped.await; },
//! ));
//!
//! // The client: its root key; a fresh token bound to this connection.
//! let setup = ClientSetup::new(
//!     tls::load_roots(&fixtures.join("ca.pem"))?,
//!     HttpVersion::Http2,
//!     ClientId::new("client1")?,
//!     Arc::new(SoftwareRootKey::from_file(&fixtures.join("client1.key"))?),
//! )?;
//! let target = Target::parse(&format!("https://localhost:{port}"))?;
//! let mut conn = BoundConnection::connect(&target, &setup).await?;
//! let token = conn.token(Form::Signed, &serde_json::json!({}))?;
//! let req = conn
//!     .request_builder(Method::GET, "/whoami")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Default::default())?;
//! let reply = conn.send_request(req).await?;
//! assert_eq!((reply.status, &reply.body[..]), (200, &b"client1"[..]));
//!
//! // Without a token, the §7 answer; the handler never runs.
//! let req = conn.request_builder(Method::GET, "/whoami").body(Default::default())?;
//! assert_eq!(conn.send_request(req).await?.status, 401);
//! # let _ = stop.send(());
//! # server.await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
pub use tower_layer::Layer;
use tower_service::Service;

use crate::keys::keystore::Keystore;
use crate::keys::keystore::{Invites, KeystoreHandle};
use crate::protocol::error::{ErrorCode, Rejection};
use crate::protocol::lookup::KeyLookup;
use crate::protocol::schedule::Ekm;
use crate::protocol::verifier::{ConnectionVerifier, Policy, Verified};
use crate::serve::admission::Ticket;
use crate::serve::metrics as m;

/// What every connection shares: the keystore and the policy.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The keystore every request looks its client up in; a reload
    /// swaps it for all connections at once.
    pub keystore: KeystoreHandle,
    /// What every connection's verifier accepts.
    pub policy: Arc<Policy>,
}

impl Binding {
    /// The shared state for `keystore` under `policy`.
    pub fn new(keystore: KeystoreHandle, policy: Policy) -> Self {
        Binding {
            keystore,
            policy: Arc::new(policy),
        }
    }

    /// The state of one connection, given the EKM exported after its
    /// handshake; put a clone into every request's extensions.
    pub fn connection(&self, ekm: Ekm) -> ConnectionBinding {
        ConnectionBinding {
            verifier: Arc::new(Mutex::new(ConnectionVerifier::new(
                ekm,
                self.policy.clone(),
            ))),
            ticket: None,
            accepted: Arc::default(),
        }
    }

    /// The layer to mount once on the application (or on its protected
    /// routes).
    pub fn layer(&self) -> BindingLayer {
        BindingLayer {
            keystore: self.keystore.clone(),
        }
    }
}

/// One TLS connection's binding: its verifier (subkeys, pinned client,
/// replay cache), shared by every request on the connection. Cloning shares
/// it.
#[derive(Debug, Clone)]
pub struct ConnectionBinding {
    verifier: Arc<Mutex<ConnectionVerifier>>,
    /// The connection's place in the server's table: the first accepted
    /// token makes it authenticated, safe from eviction and deadlines.
    ticket: Option<Arc<Ticket>>,
    /// Set by the first accepted token, read without the verifier's lock
    /// (the frontend's table keeps such connections).
    accepted: Arc<std::sync::atomic::AtomicBool>,
}

impl ConnectionBinding {
    /// Whether a token was accepted on this connection.
    #[cfg_attr(not(feature = "frontend"), allow(dead_code))]
    pub(crate) fn has_accepted_token(&self) -> bool {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `other` is this connection's binding (a clone of it).
    #[cfg(test)]
    pub(crate) fn same_connection(&self, other: &ConnectionBinding) -> bool {
        Arc::ptr_eq(&self.verifier, &other.verifier)
    }

    /// As if a token had been accepted, for tests of what keeps such
    /// connections.
    #[cfg(test)]
    pub(crate) fn mark_accepted_for_test(&self) {
        self.accepted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reports the first accepted token on this connection to `ticket`.
    pub(crate) fn admitted_as(mut self, ticket: Arc<Ticket>) -> Self {
        self.ticket = Some(ticket);
        self
    }

    /// Marks the connection authenticated by a credential the application
    /// checked itself (not a bound token): it is then safe from eviction
    /// and from the authentication deadline, as after an accepted token.
    /// Only for credentials as strong as a token; a connection that merely
    /// asked for something public must stay unauthenticated.
    pub fn authenticated_otherwise(&self) {
        if let Some(t) = &self.ticket {
            t.authenticate();
        }
    }

    /// The enrolment proof (docs/PROTOCOL.md §10): steps 1–14 for a token
    /// whose root key is a pending invite's secret, looked up in `invites`
    /// alone, never among the clients; with the subkeys that secret gives
    /// this connection, which the answer is encrypted with.
    pub(crate) fn check_invite(
        &self,
        invites: &Invites<'_>,
        headers: &http::HeaderMap,
    ) -> Result<(Verified, crate::SubKeys), Rejection> {
        let token = bearer_token(headers)?;
        let mut conn = match self.verifier.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let verified = conn.verify(invites, token)?;
        let secret = invites
            .client_keys(verified.client_id.as_str())
            .and_then(|c| c.keys.get(verified.key_index))
            .ok_or(Rejection::new(ErrorCode::UnknownClient, "no such invite"))?;
        let keys = conn
            .derive_subkeys(secret, &verified.client_id)
            .map_err(|_| Rejection::new(ErrorCode::UnknownClient, "no such invite"))?;
        drop(conn);
        self.accepted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = &self.ticket {
            t.authenticate();
        }
        Ok((verified, keys))
    }

    /// Steps 1–14 for one request's headers.
    pub fn check(
        &self,
        keystore: &Keystore,
        headers: &http::HeaderMap,
    ) -> Result<Verified, Rejection> {
        let token = bearer_token(headers)?;
        let mut conn = match self.verifier.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let start = std::time::Instant::now();
        let verified = conn.verify(keystore, token);
        metrics::histogram!(m::VERIFY_DURATION).record(m::seconds(start.elapsed()));
        if let Some(spent) = conn.take_key_schedule_time() {
            metrics::histogram!(m::KEY_SCHEDULE_DURATION, "key" => "software")
                .record(m::seconds(spent));
        }
        drop(conn);
        let verified = verified.inspect_err(|r| {
            if r.at_replay_bound() {
                metrics::counter!(m::REPLAY_CACHE_FULL).increment(1);
            }
        })?;
        self.accepted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = &self.ticket {
            t.authenticate();
        }
        Ok(verified)
    }
}

/// The verifier as a layer; mount it once. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct BindingLayer {
    keystore: KeystoreHandle,
}

impl<S> Layer<S> for BindingLayer {
    type Service = BindingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BindingService {
            inner,
            layer: self.clone(),
        }
    }
}

/// How a request fared, attached to every response as an extension so the
/// server can log one line per request without re-parsing anything.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub client_id: Option<crate::ClientId>,
    pub form: Option<crate::Form>,
    pub code: Option<ErrorCode>,
}

/// A service behind [`BindingLayer`]: a request reaches it only with a
/// token bound to its connection, the [`Verified`] token in its
/// extensions; any other gets the §7 401 (a 500 when the request carries
/// no [`ConnectionBinding`]).
#[derive(Debug, Clone)]
pub struct BindingService<S> {
    inner: S,
    layer: BindingLayer,
}

impl BindingLayer {
    /// Steps 1–14 for a request, on the connection its extensions name.
    fn check(&self, req: &http::request::Parts) -> Result<Verified, Refusal> {
        let conn = req
            .extensions
            .get::<ConnectionBinding>()
            .ok_or(Refusal::Unbound)?;
        conn.check(&self.keystore.snapshot(), &req.headers)
            .map_err(Refusal::Token)
    }
}

/// Why a request does not reach the inner service.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// A §7 refusal of the token.
    Token(Rejection),
    /// The request came through no binding acceptor: a deployment error
    /// (the layer mounted behind a plain listener), never client input.
    Unbound,
}

/// Whether `req` carries exactly the static bearer credential `expected`,
/// compared in constant time: the benchmarks' baseline, against which the
/// binding's own cost is measured. A match authenticates the connection as
/// an accepted token would.
pub(crate) fn static_bearer_accepted<B>(expected: &[u8], req: &Request<B>) -> bool {
    use subtle::ConstantTimeEq;
    let ok = match bearer_token(req.headers()) {
        Ok(t) => bool::from(t.as_bytes().ct_eq(expected)),
        Err(_) => false,
    };
    if ok {
        if let Some(conn) = req.extensions().get::<ConnectionBinding>() {
            conn.authenticated_otherwise();
        }
    }
    ok
}

/// Step 1: exactly one `Authorization: Bearer <token>`.
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(MISSING);
    };
    if values.next().is_some() {
        return Err(Rejection::new(
            ErrorCode::Malformed,
            "more than one Authorization header",
        ));
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return Err(MISSING);
    }
    let token = std::str::from_utf8(rest)
        .map_err(|_| Rejection::new(ErrorCode::Malformed, "bearer token is not ASCII"))?
        .trim_matches(' ');
    if token.is_empty() {
        return Err(Rejection::new(ErrorCode::Malformed, "empty bearer token"));
    }
    Ok(token)
}

const MISSING: Rejection = Rejection::new(
    ErrorCode::MissingToken,
    "no Authorization header with the Bearer scheme",
);

/// The §7 answer to a refused request.
pub(crate) fn unauthorized<B: From<Bytes>>(r: Rejection) -> Response<B> {
    let challenge = HeaderValue::from_static(r.code.challenge());
    let body = serde_json::json!({"error": r.code.as_str(), "message": r.detail});
    let mut resp = Response::new(B::from(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(WWW_AUTHENTICATE, challenge);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BindingService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BindingFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.layer.check(&parts) {
            Ok(verified) => {
                let outcome = Outcome {
                    client_id: Some(verified.client_id.clone()),
                    form: Some(verified.form),
                    code: None,
                };
                parts.extensions.insert(verified);
                BindingFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(Request::from_parts(parts, body)),
                        outcome: Some(outcome),
                    },
                }
            }
            Err(refusal) => BindingFuture {
                kind: Kind::Refused {
                    refusal,
                    grpc: is_grpc(&parts.headers),
                    body: std::marker::PhantomData,
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`BindingService`]: the inner service's, or an
    /// immediate 401. Its kind is private, so the refusal stays an
    /// implementation detail.
    pub struct BindingFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F, outcome: Option<Outcome> },
        // The answer is made when polled, from a `Copy` rejection, so a
        // future polled again after completion answers again instead of
        // hanging.
        Refused { refusal: Refusal, grpc: bool, body: std::marker::PhantomData<fn() -> B> },
    }
}

impl<F, B, E> Future for BindingFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, outcome } => match future.poll(cx) {
                Poll::Ready(Ok(mut resp)) => {
                    if let Some(o) = outcome.take() {
                        resp.extensions_mut().insert(o);
                    }
                    Poll::Ready(Ok(resp))
                }
                other => other,
            },
            KindProj::Refused { refusal, grpc, .. } => {
                let mut resp = match *refusal {
                    Refusal::Token(rejection) => {
                        let mut resp = unauthorized(rejection);
                        resp.extensions_mut().insert(Outcome {
                            client_id: None,
                            form: None,
                            code: Some(rejection.code),
                        });
                        resp
                    }
                    Refusal::Unbound => unbound(),
                };
                if *grpc {
                    let (status, code) = match refusal {
                        Refusal::Token(r) => ("16", r.code.as_str()),
                        Refusal::Unbound => ("13", "not_bound"),
                    };
                    grpc_refusal(&mut resp, status, code);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

/// Whether a request is a gRPC call (`application/grpc`, `+proto`, …).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A refusal as a gRPC client reads it: the HTTP status and challenge
/// kept, the answer made a gRPC "trailers-only" response (no body,
/// `content-type: application/grpc`, `grpc-status` and `grpc-message` in
/// the head): 16 UNAUTHENTICATED or 13 INTERNAL, with the stable code.
/// With the JSON body, tonic read it as a broken frame (INTERNAL) and
/// grpcio gave up on the stream (UNKNOWN).
pub(crate) fn grpc_refusal<B: From<Bytes>>(
    resp: &mut Response<B>,
    status: &'static str,
    code: &'static str,
) {
    *resp.body_mut() = B::from(Bytes::new());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from_static(status));
    h.insert("grpc-message", HeaderValue::from_static(code));
}

/// The answer when the layer sees a request no binding acceptor passed:
/// 500, logged, since the deployment is wrong and no token could verify.
pub(crate) fn unbound<B: From<Bytes>>() -> Response<B> {
    // A deployment error repeats on every request: a line a second says so.
    static BUDGET: std::sync::OnceLock<crate::serve::throttle::LogBudget> =
        std::sync::OnceLock::new();
    if BUDGET
        .get_or_init(|| crate::serve::throttle::LogBudget::new(1))
        .allow()
    {
        tracing::error!(
            "a request reached the binding layer without a ConnectionBinding extension: \
             serve the app with jose_binding::server::serve (or, behind a TLS-terminating \
             frontend, serve_frontend with its binding headers set), or insert \
             Binding::connection(ekm) into each request's extensions"
        );
    }
    let body = Bytes::from_static(br#"{"error":"not_bound"}"#);
    let mut resp = Response::new(B::from(body));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer_token(&headers(&[])).unwrap_err().code,
            ErrorCode::MissingToken
        );
        assert_eq!(
            bearer_token(&headers(&[b"Basic abc"])).unwrap_err().code,
            ErrorCode::MissingToken
        );
        assert_eq!(
            bearer_token(&headers(&[b"Bearer"])).unwrap_err().code,
            ErrorCode::Malformed
        );
        assert_eq!(
            bearer_token(&headers(&[b"Bearer a", b"Bearer b"]))
                .unwrap_err()
                .code,
            ErrorCode::Malformed
        );
        assert_eq!(bearer_token(&headers(&[b"bEaReR a.b.c"])).unwrap(), "a.b.c");
        assert_eq!(
            bearer_token(&headers(&[b"Bearer \xff"])).unwrap_err().code,
            ErrorCode::Malformed
        );
    }

    /// A refused request's future, polled again after it answered, answers
    /// again; it used to return `Pending` with no waker registered, which
    /// hangs whoever polls it.
    #[test]
    fn refused_future_answers_every_poll() {
        let binding = Binding::new(KeystoreHandle::default(), crate::Policy::default());
        let conn = binding.connection(crate::Ekm::from_bytes([7; 32]));
        let mut svc = binding.layer().layer(Unreachable);
        let mut req = Request::new(());
        req.extensions_mut().insert(conn);
        let fut = svc.call(req);
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..2 {
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(resp)) => {
                    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
                    let o = resp.extensions().get::<Outcome>().unwrap();
                    assert_eq!(o.code, Some(ErrorCode::MissingToken));
                }
                other => panic!("not ready: {:?}", other.is_pending()),
            }
        }
    }

    /// A request no binding acceptor passed (the layer mounted behind a
    /// plain listener) is a deployment error: 500, never the inner service.
    #[test]
    fn request_without_a_connection_binding_is_refused() {
        let binding = Binding::new(KeystoreHandle::default(), crate::Policy::default());
        let mut svc = binding.layer().layer(Unreachable);
        let mut req = Request::new(());
        req.headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        let fut = svc.call(req);
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(resp)) => {
                assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(&resp.body()[..], br#"{"error":"not_bound"}"#);
            }
            _ => panic!("answered at once"),
        }
    }

    /// An inner service that must never be reached.
    #[derive(Clone)]
    struct Unreachable;

    impl Service<Request<()>> for Unreachable {
        type Response = Response<Bytes>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Bytes>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            unreachable!("a request without a token reached the inner service")
        }
    }

    #[test]
    fn challenge_text_is_exact() {
        for code in ErrorCode::ALL {
            if code == ErrorCode::MissingToken {
                assert_eq!(code.challenge(), "Bearer realm=\"jose-binding\"");
                continue;
            }
            assert_eq!(
                code.challenge(),
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    code.as_str()
                )
            );
        }
        let r: Response<Bytes> = unauthorized(Rejection::new(ErrorCode::MissingToken, "x"));
        let www = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(www.starts_with("Bearer") && !www.contains("error"));
    }
}
