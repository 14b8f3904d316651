//! The gateway in front of an HTTP/2 upstream (`h2c://`): many clients'
//! requests multiplexed on one upstream connection, a stream the upstream
//! resets failing alone, and the upstream going away with GOAWAY: what it
//! did not process goes again on a new connection, what it may have
//! processed is the client's 502.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use jose_binding::client::{BoundConnection, HttpVersion};
use jose_binding::gateway::GatewayConfig;
use jose_binding::Form;
use jose_binding_e2e::h2_double::{self, FirstAnswer};
use jose_binding_e2e::{connect, setup, TestServer};

/// What the h2c upstream has seen: connections, and the most requests in
/// flight at once.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// An h2c upstream: `/reset` fails (hyper resets the stream), anything
/// else answers 200 after 100 ms.
async fn h2c_upstream() -> (u16, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        if req.uri().path() == "/reset" {
                            return Err("reset this stream");
                        }
                        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        s.most_in_flight.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        s.in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, &str>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

async fn gateway_to(upstream: &str) -> TestServer {
    TestServer::gateway(GatewayConfig::new(upstream.parse().unwrap())).await
}

/// `method path` with a fresh token and `body`; the status.
async fn status(c: &mut BoundConnection, method: Method, path: &str, body: &'static [u8]) -> u16 {
    let token = c.token(Form::Signed, &serde_json::json!({})).unwrap();
    let req = c
        .request_builder(method, path)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    c.send_request(req).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_upstream_connection_and_a_reset_fails_alone() {
    let (port, seen) = h2c_upstream().await;
    let server = gateway_to(&format!("h2c://127.0.0.1:{port}")).await;
    let mut clients = Vec::new();
    for i in 0..8 {
        let who = if i % 2 == 0 { "client1" } else { "client2" };
        clients.push(connect(&server, &setup(who, HttpVersion::Http2)).await);
    }
    // The connection made first: hyper-util's pool may open a second one
    // when requests race the first one's handshake, which is not what
    // this test is about.
    assert_eq!(
        status(&mut clients[0], Method::GET, "/work", b"").await,
        200
    );
    // Eight clients at once, one of them asking for the reset stream.
    let calls: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let path = if i == 3 { "/reset" } else { "/work" };
                let mut got = Vec::new();
                for _ in 0..3 {
                    got.push(status(&mut c, Method::GET, path, b"").await);
                }
                (i, got)
            })
        })
        .collect();
    for call in calls {
        let (i, got) = call.await.unwrap();
        let want = if i == 3 { 502 } else { 200 };
        assert_eq!(got, [want; 3], "client {i}");
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
    let most = seen.most_in_flight.load(Ordering::SeqCst);
    assert!(
        most >= 4,
        "streams of several clients in flight at once: {most}"
    );
}

/// The upstream's GOAWAY before it processed a request: sent again on a
/// new connection, even a POST; a reset that may follow processing, or a
/// refusal after the body went, is a 502 and is not sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_upstream_did_not_process_goes_again_and_nothing_else_does() {
    let cases: [(FirstAnswer, &'static [u8], u16, usize); 4] = [
        (FirstAnswer::GoAway, b"", 200, 2),
        (FirstAnswer::RefusedStream, b"", 200, 2),
        (FirstAnswer::RefusedStream, b"sent once", 502, 1),
        (FirstAnswer::Cancel, b"", 502, 1),
    ];
    for (first, body, want, requests) in cases {
        let (port, seen) = h2_double::start(first, false).await;
        let server = gateway_to(&format!("h2c://127.0.0.1:{port}")).await;
        let mut c = connect(&server, &setup("client1", HttpVersion::Http2)).await;
        let got = status(&mut c, Method::POST, "/orders", body).await;
        assert_eq!(got, want, "{first:?} with {} body bytes", body.len());
        assert_eq!(seen.load(Ordering::SeqCst), requests, "{first:?}");
        // The client's connection carries on either way.
        assert_eq!(status(&mut c, Method::GET, "/next", b"").await, 200);
    }
}
