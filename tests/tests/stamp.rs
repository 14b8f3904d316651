//! The client layer: a fresh token stamped on every request of a bound
//! connection, through plain tower calls on the connection's service.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use jose_binding::client::HttpVersion;
use jose_binding::layer::Layer;
use jose_binding::stamp::StampLayer;
use jose_binding::IssueError;
use jose_binding::{Form, Policy};
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use serde_json::{json, Value};
use tower_service::Service;

#[tokio::test]
async fn every_request_gets_a_fresh_bound_token() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let conn = connect(&server, &setup("client1", version)).await;
        let (sender, issuer) = conn.into_service();
        let stamp = StampLayer::new(issuer.clone(), Form::EncryptedThenSigned)
            .with_claims(&json!({"role": "ops"}))
            .unwrap();
        let mut client = stamp.layer(sender);
        let mut jtis = std::collections::HashSet::new();
        for i in 0..5 {
            let mut req: Request<Full<Bytes>> = Request::builder()
                .method(Method::POST)
                .uri(if version == HttpVersion::Http2 {
                    format!("https://localhost:{}/v1/claims", server.port)
                } else {
                    "/v1/claims".to_owned()
                })
                .header(http::header::HOST, format!("localhost:{}", server.port))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if i == 0 {
                // An app's own Authorization never leaves beside the token.
                req.headers_mut()
                    .insert(AUTHORIZATION, "Bearer app-secret".parse().unwrap());
            }
            // The sender takes any body, so name the one this request has.
            std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut client, cx))
                .await
                .unwrap();
            let resp = client.call(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{version:?} request {i}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["form"], "encrypted-then-signed");
            assert_eq!(v["claims"]["role"], "ops");
            assert!(jtis.insert(v["claims"]["jti"].as_str().unwrap().to_owned()));
        }
    }
    // Claims the issuer sets, or that are not an object, are refused once,
    // when the layer is made.
    let conn = connect(&server, &setup("client1", HttpVersion::Auto)).await;
    let (_, issuer) = conn.into_service();
    let layer = || StampLayer::new(issuer.clone(), Form::Signed);
    assert!(matches!(
        layer().with_claims(&json!({"exp": 1})),
        Err(IssueError::Reserved(n)) if n == "exp"
    ));
    assert!(matches!(
        layer().with_claims(&json!([1])),
        Err(IssueError::NotObject)
    ));
    server.stop().await;
}
