//! The client sidecar while its server is killed and restarted under a
//! steady stream of app requests: only what was in flight fails, the gap
//! answers 502 at once, and requests after the restart succeed on fresh
//! connections. `-- --nocapture` prints the counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use jose_binding::client::{HttpVersion, Target};
use jose_binding::sidecar::{serve, Listener, Sidecar, SidecarConfig};
use jose_binding_e2e::process::ServerProcess;
use jose_binding_e2e::setup;
use jose_binding_e2e::upstream::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");
const WORKERS: usize = 4;

/// One plain-HTTP POST /v1/claims to the sidecar, as an app sends it.
async fn post(addr: &str) -> (u16, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/v1/claims")
        .header("host", addr)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_fails_only_what_was_in_flight() {
    let port = free_port();
    let mut server = ServerProcess::start_at(BIN.as_ref(), port, &[], &[], "info");
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let target = Target::parse(&format!("https://localhost:{port}")).unwrap();
        let mut config = SidecarConfig::new(target, setup("client1", version));
        config.connections = WORKERS;
        let listener = Listener::bind("127.0.0.1:0", false).await.unwrap();
        let addr = listener.describe();
        let sidecar = tokio::spawn(serve(
            listener,
            Sidecar::new(config),
            Duration::from_secs(1),
            std::future::pending(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (addr, stop) = (addr.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = t0.elapsed();
                        let (status, body) =
                            tokio::time::timeout(Duration::from_secs(10), post(&addr))
                                .await
                                .expect("every request is answered");
                        seen.push((started, t0.elapsed(), status, body));
                    }
                    seen
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed_at = t0.elapsed();
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        server = ServerProcess::start_at(BIN.as_ref(), port, &[], &[], "info");
        let ready_at = t0.elapsed();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut seen = Vec::new();
        for w in workers {
            seen.extend(w.await.unwrap());
        }
        sidecar.abort();

        let failed = |from: Duration, to: Duration| {
            seen.iter()
                .filter(|(s, _, status, _)| *s >= from && *s < to && *status != 200)
                .count()
        };
        let in_flight_failed = seen
            .iter()
            .filter(|(s, e, status, _)| *s < killed_at && *e >= killed_at && *status != 200)
            .count();
        let before = failed(Duration::ZERO, killed_at);
        let gap = failed(killed_at, ready_at);
        let after = failed(ready_at, Duration::MAX);
        let after_total = seen.iter().filter(|(s, ..)| *s >= ready_at).count();
        println!(
            "{version:?}: {} requests; killed at {killed_at:?}, back at {ready_at:?}; failed: {before} started before the kill ({in_flight_failed} of them in flight at it), {gap} during the gap, {after} of {after_total} after",
            seen.len()
        );
        assert_eq!(
            before, in_flight_failed,
            "only requests in flight at the kill fail"
        );
        assert!(in_flight_failed <= WORKERS);
        assert_eq!(after, 0, "requests after the restart succeed");
        assert!(after_total > 0);
        for (_, _, status, body) in &seen {
            if *status != 200 {
                assert_eq!(*status, 502);
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert_eq!(v["error"], "server_unreachable");
            }
        }
    }
}
