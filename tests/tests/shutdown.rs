//! Graceful shutdown: a request in flight when shutdown starts completes;
//! new connections are refused afterwards.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use jose_binding::client::{HttpVersion, Target};
use jose_binding::echo::{json, Body};
use jose_binding::layer::Layer;
use jose_binding::server::ServerOptions;
use jose_binding::{Form, Policy};
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use tower_service::Service;

/// A protected handler that takes 500 ms.
#[derive(Clone)]
struct Slow;

impl<B> Service<Request<B>> for Slow {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: Request<B>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(json(StatusCode::OK, r#"{"slow":true}"#))
        })
    }
}

#[tokio::test]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let mut server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        |binding| binding.layer(Slow),
    )
    .await;
    let setup = setup("client1", HttpVersion::Http1);
    let mut c = connect(&server, &setup).await;
    let token = c.token(Form::Signed, &serde_json::json!({})).unwrap();
    let in_flight = tokio::spawn(async move { c.send_token(&token).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let task = server.signal_stop().unwrap();
    let reply = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().unwrap()["slow"], true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops")
        .unwrap();
    let target = Target::parse(&server.url()).unwrap();
    assert!(
        jose_binding::client::BoundConnection::connect(&target, &setup)
            .await
            .is_err()
    );
}
