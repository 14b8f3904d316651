//! SIGTERM drains a replica for a rolling restart: `/readyz` turns 503 at
//! once while new connections are still served for `--drain-secs`; then the
//! server stops accepting, finishes in-flight requests and exits 0. A
//! second SIGTERM ends the wait.

mod support;

use std::time::{Duration, Instant};

use jose_binding_e2e::upstream::{free_port, plain_get};
use support::{repo, signed_request, Server};

fn start(drain_secs: &str, status_port: u16) -> Server {
    let status = format!("127.0.0.1:{status_port}");
    let args = [
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--status-listen",
        &status,
        "--drain-secs",
        drain_secs,
    ];
    Server::start(&args, &repo(), &[]).expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_503_serves_through_the_drain_then_exits_0() {
    let status_port = free_port();
    let mut server = start("3", status_port);
    let ready = plain_get(status_port, "/readyz").await;
    assert!(ready.ends_with(r#"{"status":"ready"}"#), "{ready}");

    server.signal("TERM");
    let sent = Instant::now();
    assert!(
        server
            .wait_for("SIGTERM: draining", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        server.log
    );
    let draining = plain_get(status_port, "/readyz").await;
    assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
    assert!(
        draining.ends_with(r#"{"status":"not_ready","reason":"draining"}"#),
        "{draining}"
    );
    assert_eq!(
        signed_request(server.port).await,
        200,
        "a new connection during the drain is served"
    );
    assert!(server.exited().is_none(), "still serving during the drain");

    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("exits after the drain");
    let took = sent.elapsed();
    assert!(status.success(), "{status:?}: {:?}", server.log);
    assert!(
        took >= Duration::from_millis(2900),
        "stopped after {took:?}, before the 3 s drain"
    );
    let log = server.log.join("\n");
    assert!(log.contains("shutting down: no new connections"), "{log}");
    assert!(log.contains("jwt-server stopped"), "{log}");
}

#[test]
fn a_second_sigterm_ends_the_drain() {
    let mut server = start("600", free_port());
    server.signal("TERM");
    assert!(server
        .wait_for("SIGTERM: draining", Duration::from_secs(5))
        .is_some());
    let sent = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("the second SIGTERM ends the 600 s drain");
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(server.log.join("\n").contains("second SIGTERM"));
}

#[test]
fn ctrl_c_skips_the_drain() {
    let mut server = start("600", free_port());
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("SIGINT stops without the 600 s drain");
    assert!(status.success(), "{status:?}");
    assert!(!server.log.join("\n").contains("SIGTERM: draining"));
}

/// `--max-connection-age-secs`: an old connection is asked to finish, the
/// client reconnects and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_finished_at_their_maximum_age() {
    use jose_binding::client::{BoundConnection, HttpVersion, Target};
    let args = [
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-connection-age-secs",
        "1",
    ];
    let server = Server::start(&args, &repo(), &[]).expect("server starts");
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let setup = jose_binding_e2e::setup("client1", version);
        let mut conn = BoundConnection::connect(&target, &setup).await.unwrap();
        let json = serde_json::json!({});
        assert_eq!(
            conn.send(jose_binding::Form::Signed, &json)
                .await
                .unwrap()
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            conn.send(jose_binding::Form::Signed, &json).await.is_err(),
            "{version:?}: the old connection was finished"
        );
        let mut fresh = BoundConnection::connect(&target, &setup).await.unwrap();
        assert_eq!(
            fresh
                .send(jose_binding::Form::Signed, &json)
                .await
                .unwrap()
                .status,
            200
        );
    }
}
