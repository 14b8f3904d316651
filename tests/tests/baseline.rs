//! The benchmark-only baseline route: the right static token authenticates
//! its connection (it outlives the authentication deadline, as a bound
//! token's would), a wrong one does not.

use std::time::Duration;

use http::Method;
use jose_binding::client::HttpVersion;
use jose_binding::server::ServerOptions;
use jose_binding::Policy;
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use jwt_server::app::EchoApp;

#[tokio::test]
async fn the_baseline_token_authenticates_its_connection() {
    const TOKEN: &str = "bench-baseline-token-0123456789";
    let opts = ServerOptions {
        auth_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
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
