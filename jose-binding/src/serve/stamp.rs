//! The client side as a tower layer: a fresh bound token on every request
//! of a bound connection, as tower-http's `AddAuthorization` adds a fixed
//! one.
//!
//! ```no_run
//! # async fn run(target: jose_binding::client::Target, setup: jose_binding::client::ClientSetup)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use jose_binding::client::BoundConnection;
//! use jose_binding::stamp::StampLayer;
//! use jose_binding::Form;
//! use tower_layer::Layer;
//!
//! let (sender, issuer) = BoundConnection::connect(&target, &setup).await?.into_service();
//! let stamp = StampLayer::new(issuer, Form::Signed).with_claims(&serde_json::json!({"role": "ops"}))?;
//! let req = sender
//!     .request_builder(http::Method::GET, "/v1/orders")
//!     .body(http_body_util::Full::new(bytes::Bytes::new()))?;
//! let mut client = stamp.layer(sender);
//! // poll_ready, then call: the request leaves with `Authorization: Bearer <fresh token>`.
//! # let _ = (&mut client, req);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::Request;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::protocol::issuer::{IssueError, Issuer, REGISTERED};
use crate::protocol::token::Form;

/// Stamps a fresh token of one form, over fixed application claims, on
/// every request; replaces whatever `Authorization` the request had.
#[derive(Debug, Clone)]
pub struct StampLayer {
    issuer: Arc<Issuer>,
    form: Form,
    claims: Arc<Map<String, Value>>,
}

impl StampLayer {
    /// Tokens of `form` from the connection's `issuer`, with no application
    /// claims.
    pub fn new(issuer: Arc<Issuer>, form: Form) -> Self {
        StampLayer {
            issuer,
            form,
            claims: Arc::new(Map::new()),
        }
    }

    /// The application claims every token carries. Checked here, once: they
    /// must be a JSON object and use none of the names the issuer sets.
    pub fn with_claims<C: serde::Serialize + ?Sized>(
        mut self,
        claims: &C,
    ) -> Result<Self, IssueError> {
        let claims = match serde_json::to_value(claims) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            Ok(_) => return Err(IssueError::NotObject),
            Err(e) => return Err(IssueError::Serialize(e.to_string())),
        };
        if let Some(name) = REGISTERED.iter().find(|n| claims.contains_key(**n)) {
            return Err(IssueError::Reserved((*name).to_owned()));
        }
        self.claims = Arc::new(claims);
        Ok(self)
    }
}

impl<S> Layer<S> for StampLayer {
    type Service = StampService<S>;
    fn layer(&self, inner: S) -> StampService<S> {
        StampService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`StampLayer`].
#[derive(Debug, Clone)]
pub struct StampService<S> {
    inner: S,
    layer: StampLayer,
}

impl<S, B> Service<Request<B>> for StampService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        // The claims were checked when the layer was made, so issuing cannot
        // fail; were it to, the request leaves without a token and the
        // server answers missing_token rather than this client panicking.
        let headers = req.headers_mut();
        headers.remove(AUTHORIZATION);
        if let Ok(token) = self
            .layer
            .issuer
            .issue(self.layer.form, &*self.layer.claims)
        {
            if let Ok(value) = crate::serve::client::bearer(&token) {
                headers.insert(AUTHORIZATION, value);
            }
        }
        self.inner.call(req)
    }
}
