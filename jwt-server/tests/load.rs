//! Load and limits against a real jwt-server process: 1000 concurrent TLS
//! connections x 50 requests, zero errors, the server's peak RSS and open
//! descriptors bounded; and the connection limit refusing extra connections
//! cleanly. Figures are printed for docs/SECURITY.md (no timing asserts).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::Form;
use jose_binding_e2e::{fixtures, setup};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--keystore")
        .arg(fixtures().join("keystore.toml"))
        .arg("--cert")
        .arg(fixtures().join("server.pem"))
        .arg("--key")
        .arg(fixtures().join("server.key"))
        .args(extra)
        .env("RUST_LOG", "info,jose_binding::access=warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jwt-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = loop {
        let line = lines.next().expect("ready line").expect("utf-8");
        if let Some(at) = line.find("listen=127.0.0.1:") {
            break line[at + 17..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, port }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_fifty_requests_each() {
    const CONNS: usize = 1000;
    const REQS: usize = 50;
    let server = start(&[]);
    let pid = server.child.id();
    let fds_before = open_fds(pid);
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = Arc::new(setup("client1", HttpVersion::Http1));
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    // All connections are open at once: each waits at a barrier before sending.
    let barrier = Arc::new(tokio::sync::Barrier::new(CONNS + 1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (target, setup, ok, errors, barrier) = (
            target.clone(),
            setup.clone(),
            ok.clone(),
            errors.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let conn = BoundConnection::connect(&target, &setup).await;
            barrier.wait().await;
            let Ok(mut conn) = conn else {
                errors.fetch_add(REQS, Ordering::Relaxed);
                return;
            };
            for _ in 0..REQS {
                match conn
                    .send(Form::Signed, &serde_json::json!({"load": true}))
                    .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    barrier.wait().await;
    let fds_all_open = open_fds(pid);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = proc_status(pid, "VmHWM:");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = open_fds(pid);
    eprintln!(
        "load: {CONNS} connections x {REQS} requests: {} ok, {} errors in {:.1} s; server peak RSS {} KiB; \
         fds before {fds_before}, all connections open {fds_all_open}, after {fds_after}",
        ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_extra_connections_cleanly() {
    let server = start(&["--max-connections", "8"]);
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = setup("client1", HttpVersion::Http1);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            BoundConnection::connect(&target, &setup)
                .await
                .expect("within the limit"),
        );
    }
    // The ninth is closed at accept: its handshake fails, quickly.
    let t = Instant::now();
    assert!(BoundConnection::connect(&target, &setup).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
    // The held connections are unaffected.
    for c in &mut held {
        assert_eq!(
            c.send(Form::Signed, &serde_json::json!({}))
                .await
                .unwrap()
                .status,
            200
        );
    }
    // Freeing a slot lets a new connection in.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = BoundConnection::connect(&target, &setup)
        .await
        .expect("a slot is free again");
    assert_eq!(
        again
            .send(Form::Signed, &serde_json::json!({}))
            .await
            .unwrap()
            .status,
        200
    );
}

/// A flood of unique `jti`s on one connection: the replay cache is bounded
/// (2048 entries here), so the server's memory stops growing. An unbounded
/// cache would hold all 20,000 entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_cache_memory_stays_bounded_under_a_jti_flood() {
    const TOKENS: usize = 20_000;
    let server = start(&["--replay-capacity", "2048"]);
    let pid = server.child.id();
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
                assert_eq!(r.error_code().as_deref(), Some("replayed"));
                refused += 1;
            }
            s => panic!("status {s}"),
        }
    };
    // Fill the cache and warm the allocator up, then take the baseline.
    for _ in 0..2_500 {
        send(&mut conn).await;
    }
    let rss_before = proc_status(pid, "VmRSS:");
    for _ in 0..TOKENS {
        send(&mut conn).await;
    }
    let rss_after = proc_status(pid, "VmRSS:");
    let grew_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "jti flood: {TOKENS} unique tokens on one connection, {refused} refused at the bound (warm-up included); \
         server RSS {rss_before} KiB -> {rss_after} KiB (+{grew_kib} KiB)"
    );
    // A full cache already sits in the baseline; 20,000 more unbounded entries
    // would add about 1 MiB (measured: ~58 bytes per entry).
    assert!(grew_kib < 512, "RSS grew by {grew_kib} KiB");
}
