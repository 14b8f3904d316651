//! Graceful shutdown: a request in flight when shutdown starts completes;
//! new connections are refused afterwards.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use jose_binding::client::{HttpVersion, Target};
use jose_binding::layer::{BindingLayer, BindingService, Layer};
use jose_binding::server::{json, AppFuture, Body, MakeApp, ServerOptions};
use jose_binding::{Form, Policy};
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use tower_service::Service;

/// An app whose protected handler takes 500 ms.
struct SlowApp;

#[derive(Clone)]
struct Slow;

impl Service<Request<Incoming>> for Slow {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AppFuture;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: Request<Incoming>) -> AppFuture {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(json(StatusCode::OK, r#"{"slow":true}"#))
        })
    }
}

#[derive(Clone)]
struct SlowService(BindingService<Slow>);

impl Service<Request<Incoming>> for SlowService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AppFuture;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: Request<Incoming>) -> AppFuture {
        Box::pin(self.0.call(req))
    }
}

impl MakeApp for SlowApp {
    type Service = SlowService;
    fn make(&self, binding: BindingLayer, _peer: SocketAddr) -> SlowService {
        SlowService(binding.layer(Slow))
    }
}

#[tokio::test]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let mut server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        SlowApp,
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
