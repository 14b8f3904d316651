//! The reference application of PROTOCOL.md §6, which `jwt-server`, the
//! `jwt-client demo` and the tests serve alike: `POST /v1/claims` behind
//! the binding layer echoes the verified claims, `GET /healthz` is open,
//! everything else is 404.
//!
//! For benchmarks only, [`EchoApp::with_baseline`] adds `POST /v1/baseline`:
//! the same stack with the binding replaced by a constant-time compare
//! against one static bearer token, so load runs can measure what binding
//! costs. Off unless configured.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::serve::layer::{
    static_bearer_accepted, unauthorized, BindingLayer, BindingService, Outcome,
};
use crate::{ErrorCode, Rejection, Verified};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

/// Every response body of the echo app: one buffer.
pub type Body = Full<Bytes>;

/// The echo app; mounts the binding layer on its claims route only.
#[derive(Clone)]
pub struct EchoApp {
    claims: BindingService<EchoClaims>,
    baseline: Option<Arc<zeroize::Zeroizing<Vec<u8>>>>,
}

impl std::fmt::Debug for EchoApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoApp")
            .field("baseline", &self.baseline.is_some())
            .finish_non_exhaustive()
    }
}

impl EchoApp {
    /// The echo app with `binding` on `POST /v1/claims`, and no baseline
    /// route.
    pub fn new(binding: &BindingLayer) -> Self {
        use crate::serve::layer::Layer;
        EchoApp {
            claims: binding.layer(EchoClaims),
            baseline: None,
        }
    }

    /// Enables `POST /v1/baseline` with this static bearer token.
    pub fn with_baseline(mut self, token: &[u8]) -> Self {
        self.baseline = Some(Arc::new(zeroize::Zeroizing::new(token.to_vec())));
        self
    }
}

/// The future of a route: the claims route answers after the binding
/// layer, every other at once.
pub type EchoFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for EchoApp {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EchoFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> EchoFuture {
        let now = match (req.method(), req.uri().path(), &self.baseline) {
            (&Method::POST, "/v1/claims", _) => return Box::pin(self.claims.call(req.map(|_| ()))),
            (&Method::POST, "/v1/baseline", Some(expected)) => baseline_answer(expected, &req),
            (&Method::GET, "/healthz", _) => json(StatusCode::OK, r#"{"status":"ok"}"#),
            (_, "/v1/claims" | "/healthz", _) => json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method_not_allowed"}"#,
            ),
            _ => json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#),
        };
        Box::pin(std::future::ready(Ok(now)))
    }
}

/// The claims the baseline route echoes: the size of a `jwt-client bench` token's.
const BASELINE_CLAIMS: &str = r#"{"iss":"baseline","aud":"localhost","iat":1767225600,"exp":1767225660,"jti":"AAAAAAAAAAAAAAAAAAAAAA","role":"bench"}"#;

/// The baseline route: a static bearer token compared in constant time.
/// The right token authenticates the connection, as a bound token would,
/// so a load run's baseline connections live as long as its bound ones.
fn baseline_answer<B>(expected: &[u8], req: &Request<B>) -> Response<Body> {
    let ok = static_bearer_accepted(expected, req);
    let mut resp = if ok {
        // The same work as the echo route after verification: the echo of a
        // claims set of the size a bound token carries, so the comparison
        // isolates the binding.
        json(
            StatusCode::OK,
            echo_body("baseline", "static", BASELINE_CLAIMS),
        )
    } else {
        unauthorized(Rejection::new(
            ErrorCode::BadSignature,
            "not the static baseline token",
        ))
    };
    resp.extensions_mut().insert(Outcome {
        client_id: None,
        form: None,
        code: (!ok).then_some(ErrorCode::BadSignature),
    });
    resp
}

/// The echo handler: `{"client_id", "form", "claims"}` of the verified token.
#[derive(Debug, Clone, Copy)]
pub struct EchoClaims;

impl Service<Request<()>> for EchoClaims {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let resp = match req.extensions().get::<Verified>() {
            Some(v) => json(
                StatusCode::OK,
                echo_body(v.client_id.as_str(), v.form.as_str(), v.claims.as_json()),
            ),
            // Unreachable behind the layer; never a 5xx for client input.
            None => json(StatusCode::UNAUTHORIZED, r#"{"error":"missing_token"}"#),
        };
        std::future::ready(Ok(resp))
    }
}

/// `{"client_id", "form", "claims"}` (§6), with the verified claims text
/// written as it is: it passed the strict parse, so it is one JSON object.
fn echo_body(client_id: &str, form: &str, claims_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + client_id.len() + form.len() + claims_json.len());
    out.extend_from_slice(br#"{"client_id":"#);
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, client_id);
    out.extend_from_slice(br#","form":"#);
    let _ = serde_json::to_writer(&mut out, form);
    out.extend_from_slice(br#","claims":"#);
    out.extend_from_slice(claims_json.as_bytes());
    out.push(b'}');
    out
}

/// A JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
