//! An axum app protected by the binding layer, mounted once.
//!
//! Run from the repository root: `cargo run -p jose-binding-e2e --example axum`
//! (serves https://localhost:8443 with the fixtures); call it with a bound
//! client, e.g. `BoundConnection::request(Method::POST, "/v1/whoami", ..)`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::routing::post;
use axum::{Extension, Json, Router};
use jose_binding::keystore::KeystoreHandle;
use jose_binding::layer::{Binding, BindingLayer};
use jose_binding::server::{serve, ServerOptions};
use jose_binding::{tls, Keystore, Policy, Verified};
use serde::Deserialize;

/// Every route behind the binding: one `.layer(...)`.
pub fn app(binding: &BindingLayer) -> Router {
    Router::new()
        .route("/v1/whoami", post(whoami))
        .route("/v1/stream", post(stream))
        .layer(binding.clone())
}

/// The application's own claims, read from the verified token.
#[derive(Deserialize)]
struct AppClaims {
    role: Option<String>,
}

/// Verified claims reach the handler as a typed extension.
async fn whoami(Extension(v): Extension<Verified>) -> Json<serde_json::Value> {
    let role = v
        .claims
        .deserialize::<AppClaims>()
        .ok()
        .and_then(|c| c.role);
    Json(serde_json::json!({
        "client_id": v.client_id.as_str(),
        "form": v.form.as_str(),
        "role": role,
    }))
}

/// Any body works, streaming ones included.
async fn stream() -> Body {
    let chunks = ["one ", "two ", "three"].map(|s| Ok::<_, Infallible>(Bytes::from(s)));
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[allow(dead_code)] // the tests use `app` only
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chain = tls::load_certs("fixtures/server.pem".as_ref())?;
    let key = tls::load_key("fixtures/server.key".as_ref())?;
    let keystore = Keystore::load("fixtures/keystore.toml".as_ref())?;
    let binding = Binding::new(KeystoreHandle::new(keystore), Policy::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    let tls_config = Arc::new(tls::server_config(chain, key)?);
    let app = app(&binding.layer());
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(
        listener,
        tls_config,
        binding,
        app,
        ServerOptions::default(),
        stop,
    )
    .await;
    Ok(())
}
