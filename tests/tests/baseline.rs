//! The benchmark-only baseline: on the echo app's route, the right static
//! token authenticates its connection (it outlives the authentication
//! deadline, as a bound token's would), a wrong one does not; through the
//! gateway, the right one is forwarded as client `baseline`.

use std::time::Duration;

use http::Method;
use jose_binding::client::HttpVersion;
use jose_binding::echo::EchoApp;
use jose_binding::gateway::{Gateway, GatewayConfig};
use jose_binding::server::ServerOptions;
use jose_binding::Policy;
use jose_binding_e2e::upstream::HyperUpstream;
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};

const TOKEN: &str = "bench-baseline-token-0123456789";

#[tokio::test]
async fn the_baseline_token_authenticates_its_connection() {
    let mut opts = ServerOptions::default();
    opts.auth_timeout = Duration::from_secs(1);
    let server = TestServer::start_with(Policy::default(), fixture_keystore(), opts, |l| {
        EchoApp::new(l).with_baseline(TOKEN.as_bytes())
    })
    .await;
    let setup = setup("client1", HttpVersion::Http1);
    let mut right = connect(&server, &setup).await;
    let mut wrong = connect(&server, &setup).await;
    let r = right
        .request(Method::POST, "/v1/baseline", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = wrong
        .request(Method::POST, "/v1/baseline", Some("not-the-baseline-token"))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = right
        .request(Method::POST, "/v1/baseline", Some(TOKEN))
        .await
        .expect("an authenticated connection outlives the deadline");
    assert_eq!(r.status, 200);
    assert!(
        wrong
            .request(Method::POST, "/v1/baseline", Some(TOKEN))
            .await
            .is_err(),
        "a wrong token leaves the connection unauthenticated: closed at the deadline"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_gateway_forwards_the_baseline_token_as_client_baseline() {
    let upstream = HyperUpstream::start().await;
    let config = GatewayConfig::new(upstream.url().parse().unwrap());
    let gateway = Gateway::with_baseline(config, TOKEN.as_bytes()).unwrap();
    let server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        |l| gateway.service(l),
    )
    .await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let r = c
        .request(Method::GET, "/headers", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    let headers: Vec<(String, String)> = serde_json::from_value(v["headers"].clone()).unwrap();
    let id: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "x-jose-binding-client-id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(id, ["baseline"]);
    let r = c
        .request(Method::GET, "/headers", Some("not-the-baseline-token"))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        upstream.requests(),
        1,
        "a wrong token never reaches the upstream"
    );
    server.stop().await;
}
