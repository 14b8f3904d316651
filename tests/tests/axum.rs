//! An axum Router protected by one `.layer(...)`, served by the library's
//! accept loop over real TLS: verified claims reach the handler as a typed
//! extension, a streaming body passes, and every refusal keeps its §7 code.

#[path = "../examples/axum.rs"]
mod example;

use http::Method;
use jose_binding::client::HttpVersion;
use jose_binding::server::ServerOptions;
use jose_binding::{ErrorCode, Form, Policy};
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use serde_json::json;

#[tokio::test]
async fn axum_router_behind_one_layer() {
    let server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        example::app,
    )
    .await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c = connect(&server, &setup("client1", version)).await;
        let token = c
            .token(Form::EncryptedThenSigned, &json!({"role": "ops"}))
            .unwrap();
        let r = c
            .request(Method::POST, "/v1/whoami", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            r.json().unwrap(),
            json!({"client_id": "client1", "form": "encrypted-then-signed", "role": "ops"})
        );
        // The same token again: replayed, and the handler is not reached.
        let r = c
            .request(Method::POST, "/v1/whoami", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code(), Some(ErrorCode::Replayed));
        // No token: the challenge without error parameters.
        let r = c.request(Method::POST, "/v1/whoami", None).await.unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some(ErrorCode::MissingToken.challenge())
        );
        // A streaming body.
        let token = c.token(Form::Signed, &json!({})).unwrap();
        let r = c
            .request(Method::POST, "/v1/stream", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"one two three");
        // A token stolen from this connection fails on another.
        let stolen = c.token(Form::Signed, &json!({})).unwrap();
        let mut other = connect(&server, &setup("client1", version)).await;
        let r = other
            .request(Method::POST, "/v1/whoami", Some(&stolen))
            .await
            .unwrap();
        assert_eq!(r.error_code(), Some(ErrorCode::BadSignature));
    }
    server.stop().await;
}
