//! Load and limits against a real jwt-server process: 1000 concurrent TLS
//! connections x 50 requests, zero errors, the server's peak RSS and open
//! descriptors bounded; and the connection limit refusing extra connections
//! cleanly. Figures are printed for docs/SECURITY.md (no timing asserts).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::Form;
use jose_binding_e2e::process::ServerProcess;
use jose_binding_e2e::setup;

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");

fn start(extra: &[&str]) -> ServerProcess {
    ServerProcess::start(BIN.as_ref(), extra, "info,jose_binding::access=warn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_fifty_requests_each() {
    const CONNS: usize = 1000;
    const REQS: usize = 50;
    let server = start(&[]);
    let fds_before = server.open_fds();
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = Arc::new(setup("client1", HttpVersion::Http1));
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    // All connections are open at once: each waits at a barrier before sending.
    let barrier = Arc::new(tokio::sync::Barrier::new(CONNS + 1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (target, setup, ok, errors, retries, barrier) = (
            target.clone(),
            setup.clone(),
            ok.clone(),
            errors.clone(),
            retries.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // A burst of a thousand handshakes overflows the handshake and
            // per-source budgets (256 each): the server refuses the excess
            // at accept and, as a real client would, each retries. Once in,
            // a client sends its first token at once, which authenticates
            // the connection; then it waits until all are open.
            let mut conn = None;
            for _ in 0..200 {
                match BoundConnection::connect(&target, &setup).await {
                    Ok(c) => {
                        conn = Some(c);
                        break;
                    }
                    Err(_) => {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            let send = async |conn: &mut BoundConnection| {
                match conn
                    .send(Form::Signed, &serde_json::json!({"load": true}))
                    .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            };
            if let Some(c) = conn.as_mut() {
                send(c).await;
            }
            barrier.wait().await;
            let Some(mut conn) = conn else {
                errors.fetch_add(REQS, Ordering::Relaxed);
                return;
            };
            for _ in 1..REQS {
                send(&mut conn).await;
            }
        }));
    }
    barrier.wait().await;
    let fds_all_open = server.open_fds();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = server.status("VmHWM:");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = server.open_fds();
    eprintln!(
        "load: {CONNS} connections x {REQS} requests: {} ok, {} errors in {:.1} s ({} connects refused and retried); \
         server peak RSS {} KiB; fds before {fds_before}, all connections open {fds_all_open}, after {fds_after}",
        ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        retries.load(Ordering::Relaxed),
        peak_rss_kib,
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert_eq!(ok.load(Ordering::Relaxed), CONNS * REQS);
    assert!(
        fds_all_open >= CONNS,
        "the server held all {CONNS} connections at once ({fds_all_open} fds)"
    );
    assert!(
        fds_all_open <= fds_before + CONNS + 16,
        "one descriptor per connection ({fds_all_open})"
    );
    assert!(
        fds_after <= fds_before + 16,
        "descriptors released ({fds_after})"
    );
    assert!(peak_rss_kib < 512 * 1024, "peak RSS {peak_rss_kib} KiB");
}

/// At the connection limit an authenticated connection is never closed
/// for a newcomer, while an unauthenticated one is, once it has had the
/// minimum age (1 s by default) to present a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_evicts_only_unauthenticated_connections() {
    let server = start(&["--max-connections", "8"]);
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = setup("client1", HttpVersion::Http1);
    let ok = async |c: &mut BoundConnection| {
        c.send(Form::Signed, &serde_json::json!({}))
            .await
            .map(|r| r.status)
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = BoundConnection::connect(&target, &setup)
            .await
            .expect("within the limit");
        assert_eq!(ok(&mut c).await.unwrap(), 200);
        held.push(c);
    }
    // All eight are authenticated: the ninth is closed at accept, quickly,
    // even long after they were opened.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    assert!(BoundConnection::connect(&target, &setup).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
    for c in &mut held {
        assert_eq!(ok(c).await.unwrap(), 200);
    }
    // Free a slot and let a connection take it without a token.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut silent = BoundConnection::connect(&target, &setup)
        .await
        .expect("a slot is free again");
    // While it is young, a newcomer is refused rather than evicting it.
    assert!(BoundConnection::connect(&target, &setup).await.is_err());
    // Once it is a second old, a newcomer evicts it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut newcomer = BoundConnection::connect(&target, &setup)
        .await
        .expect("the unauthenticated connection makes room");
    assert_eq!(ok(&mut newcomer).await.unwrap(), 200);
    assert!(
        ok(&mut silent).await.is_err(),
        "the evicted connection is closed"
    );
    for c in &mut held {
        assert_eq!(ok(c).await.unwrap(), 200);
    }
}

/// A flood of unique `jti`s on one connection: the replay cache is bounded
/// (2048 entries here), so the server's memory stops growing. An unbounded
/// cache would hold all 20,000 entries. The status listener is on, so the
/// metrics' buffers are held to their bound too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_cache_memory_stays_bounded_under_a_jti_flood() {
    const TOKENS: usize = 20_000;
    let status = format!("127.0.0.1:{}", jose_binding_e2e::upstream::free_port());
    let server = start(&["--replay-capacity", "2048", "--status-listen", &status]);
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = setup("client1", HttpVersion::Http1);
    let mut conn = BoundConnection::connect(&target, &setup).await.unwrap();
    // Only the documented bound may refuse: more than the capacity of tokens
    // expiring in one second on one connection. On a fast machine that
    // happens while the cache is still filling, so both loops allow it.
    let mut refused = 0usize;
    let mut send = async |conn: &mut BoundConnection| {
        let r = conn
            .send(Form::Signed, &serde_json::json!({}))
            .await
            .unwrap();
        match r.status {
            200 => {}
            401 => {
                assert_eq!(
                    r.error_code().map(jose_binding::ErrorCode::as_str),
                    Some("replayed")
                );
                refused += 1;
            }
            s => panic!("status {s}"),
        }
    };
    // Fill the cache and warm the allocator up, then take the baseline.
    for _ in 0..2_500 {
        send(&mut conn).await;
    }
    let rss_before = server.status("VmRSS:");
    for _ in 0..TOKENS {
        send(&mut conn).await;
    }
    let rss_after = server.status("VmRSS:");
    let grew_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "jti flood: {TOKENS} unique tokens on one connection, {refused} refused at the bound (warm-up included); \
         server RSS {rss_before} KiB -> {rss_after} KiB (+{grew_kib} KiB)"
    );
    // A full cache already sits in the baseline; 20,000 more unbounded entries
    // would add about 1 MiB (measured: ~58 bytes per entry).
    assert!(grew_kib < 512, "RSS grew by {grew_kib} KiB");
}
