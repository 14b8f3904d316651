//! Three jwt-server replicas behind a real HAProxy in TCP mode (TLS
//! passthrough, `send-proxy-v2`, health checks on each status listener's
//! `/readyz`), sharing one keystore file: the load spreads, a token
//! replayed on another connection fails whichever replica it lands on, a
//! key rotation reaches every replica, a replica drained with SIGTERM
//! loses no request, and every replica sees the client's own address.
//! Bad PROXY headers sent straight to a replica are each closed.

mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::sidecar::SidecarConfig;
use jose_binding::{Form, SoftwareRootKey};
use jose_binding_e2e::haproxy::Haproxy;
use jose_binding_e2e::upstream::free_port;
use jose_binding_e2e::{fixture_key, fixtures, TempDir};
use support::{run, text, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The clients' own address; HAProxy and the replicas listen on 127.0.0.1.
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

struct Replica {
    server: Server,
    port: u16,
    status: u16,
}

fn start_replica(dir: &TempDir, port: u16, status: u16) -> Replica {
    let (listen, status_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{status}"));
    let (cert, key) = (fixtures().join("server.pem"), fixtures().join("server.key"));
    let keystore = dir.join("keystore.toml");
    let args = [
        "--listen",
        &listen,
        "--status-listen",
        &status_listen,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--keystore",
        keystore.to_str().unwrap(),
        "--proxy-protocol",
        "--proxy-protocol-from",
        "127.0.0.1",
        "--drain-secs",
        "2",
    ];
    let server = Server::start(&args, dir, &[]).expect("replica starts");
    Replica {
        server,
        port,
        status,
    }
}

fn haproxy(front: u16, replicas: &[Replica]) -> Haproxy {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "  server r{} 127.0.0.1:{} send-proxy-v2 check port {} inter 200ms fall 1 rise 2\n",
                i + 1,
                r.port,
                r.status
            )
        })
        .collect();
    let sections = format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fleet\n  bind 127.0.0.1:{front}\n  default_backend replicas\n\n\
         backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n  \
         http-check expect status 200\n{servers}"
    );
    Haproxy::start("fleet", &sections, front)
}

fn setup(key: SoftwareRootKey) -> ClientSetup {
    let mut s = jose_binding_e2e::setup_with_key("client1", HttpVersion::Auto, key);
    s.local_address = Some(CLIENT);
    s
}

/// A sample of the replica's `/metrics` (name and labels as rendered).
async fn metric(r: &Replica, series: &str) -> Option<f64> {
    support::metric(r.status, series).await
}

const OK: &str = r#"jose_binding_requests_total{outcome="ok",form="signed"}"#;

/// Requests each replica logged from the client's own address.
fn served(r: &mut Replica) -> usize {
    r.server
        .read_log()
        .iter()
        .filter(|l| l.contains("jose_binding::access") && l.contains("peer=127.0.0.2:"))
        .count()
}

/// `conns` connections through the balancer, `each` requests on each;
/// the statuses.
async fn load(front: u16, key: &SoftwareRootKey, conns: usize, each: usize) -> Vec<u16> {
    let target = Target::parse(&format!("https://localhost:{front}")).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..conns {
        let mut c = BoundConnection::connect(&target, &setup(key.clone()))
            .await
            .expect("connect through the balancer");
        for _ in 0..each {
            let r = c.send(Form::Signed, &serde_json::json!({})).await.unwrap();
            statuses.push(r.status);
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy() {
    let dir = TempDir::new("fleet");
    std::fs::copy(fixtures().join("keystore.toml"), dir.join("keystore.toml")).unwrap();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| start_replica(&dir, free_port(), free_port()))
        .collect();
    let front = free_port();
    let lb = haproxy(front, &replicas);
    let up = |s: &[(String, String)]| s.len() == 3 && s.iter().all(|(_, st)| st == "UP");
    let states = lb.wait_servers("replicas", Duration::from_secs(10), up);
    assert!(up(&states), "{states:?}");
    let key1 = fixture_key("client1");

    // The load spreads over all three, and each sees the client's address.
    let statuses = load(front, &key1, 30, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let per_replica: Vec<usize> = replicas.iter_mut().map(served).collect();
    assert_eq!(per_replica.iter().sum::<usize>(), 90, "{per_replica:?}");
    let mut counted = Vec::new();
    for r in &replicas {
        counted.push(metric(r, OK).await.unwrap_or(0.0) as usize);
    }
    assert_eq!(counted, per_replica, "/metrics counts what the log shows");
    assert!(counted.iter().all(|n| *n >= 15), "{counted:?}");
    eprintln!("requests per replica (from /metrics): {counted:?}");

    // A token from one connection, replayed on others: refused whichever
    // replica each lands on.
    let target = Target::parse(&format!("https://localhost:{front}")).unwrap();
    let mut first = BoundConnection::connect(&target, &setup(key1.clone()))
        .await
        .unwrap();
    let token = first.token(Form::Signed, &serde_json::json!({})).unwrap();
    let before: Vec<usize> = replicas.iter_mut().map(served).collect();
    for _ in 0..6 {
        let mut other = BoundConnection::connect(&target, &setup(key1.clone()))
            .await
            .unwrap();
        let r = other
            .request(http::Method::POST, "/v1/claims", Some(&token))
            .await
            .unwrap();
        assert_eq!(
            r.error_code().map(|c| c.as_str()),
            Some("bad_signature"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let after: Vec<usize> = replicas.iter_mut().map(served).collect();
    let refused_on: usize = before.iter().zip(&after).filter(|(b, a)| a > b).count();
    assert!(refused_on >= 2, "replays landed on {refused_on} replicas");
    let r = first
        .request(http::Method::POST, "/v1/claims", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "on its own connection it is accepted");

    // A rotation of the shared keystore reaches every replica: each one's
    // metrics show the same new keystore version within 2 s.
    let mut before_version = Vec::new();
    for r in &replicas {
        before_version.push(metric(r, "jose_binding_keystore_version").await.unwrap());
    }
    assert!(before_version.iter().all(|v| *v == before_version[0]));
    let key_out = dir.join("client1-new.key");
    let ks = dir.join("keystore.toml");
    let rotated = run(
        &[
            "keys",
            "rotate",
            "client1",
            "--keystore",
            ks.to_str().unwrap(),
            "--key-out",
            key_out.to_str().unwrap(),
        ],
        &dir,
        &[],
    );
    assert!(rotated.status.success(), "{}", text(&rotated));
    let rotated_at = Instant::now();
    let mut latencies: Vec<Option<Duration>> = vec![None; 3];
    let mut versions = vec![0.0; 3];
    while latencies.iter().any(Option::is_none) && rotated_at.elapsed() < Duration::from_secs(5) {
        for (i, r) in replicas.iter().enumerate() {
            let v = metric(r, "jose_binding_keystore_version")
                .await
                .unwrap_or(0.0);
            if latencies[i].is_none() && v != before_version[i] {
                latencies[i] = Some(rotated_at.elapsed());
                versions[i] = v;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("rotation in each replica's metrics after {latencies:?}");
    assert!(
        latencies
            .iter()
            .all(|l| l.is_some_and(|l| l < Duration::from_millis(2500))),
        "{latencies:?}"
    );
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
    let new_key = SoftwareRootKey::from_file(&key_out).unwrap();
    assert!(load(front, &new_key, 6, 1).await.iter().all(|s| *s == 200));
    assert!(
        load(front, &key1, 6, 1).await.iter().all(|s| *s == 200),
        "the previous key works until it is removed"
    );
    let removed = run(
        &[
            "keys",
            "remove",
            "client1",
            "--previous",
            "--keystore",
            ks.to_str().unwrap(),
        ],
        &dir,
        &[],
    );
    assert!(removed.status.success(), "{}", text(&removed));
    let rotated_version = Some(versions[0]);
    let deadline = Instant::now() + Duration::from_secs(2);
    for r in &replicas {
        while metric(r, "jose_binding_keystore_version").await == rotated_version {
            assert!(
                Instant::now() < deadline,
                "a replica still has the previous key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(load(front, &new_key, 6, 1).await.iter().all(|s| *s == 200));
    for status in load(front, &key1, 6, 1).await {
        assert_eq!(status, 401, "the removed key is refused on every replica");
    }

    // A steady load through the sidecar (as an app would send it) while
    // replica 1 drains: no request fails.
    let sidecar_config = SidecarConfig::new(target.clone(), setup(new_key.clone()));
    let sidecar = jose_binding_e2e::start_sidecar(sidecar_config, "127.0.0.1:0").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, reconnects) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, reconnects) =
                (stop.clone(), ok.clone(), failed.clone(), reconnects.clone());
            let sidecar = sidecar.clone();
            tokio::spawn(async move {
                let mut app = None;
                while !stop.load(Ordering::Relaxed) {
                    if app.is_none() {
                        let tcp = tokio::net::TcpStream::connect(&sidecar).await.unwrap();
                        let (send, conn) =
                            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
                                hyper_util::rt::TokioIo::new(tcp),
                            )
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        app = Some(send);
                    }
                    let send = app.as_mut().expect("connected above");
                    let req = http::Request::post("/v1/claims")
                        .header("host", "localhost")
                        .body(Empty::new())
                        .unwrap();
                    match send.send_request(req).await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.into_body().collect().await.map(|b| b.to_bytes());
                            eprintln!("failed during the drain: {status} {body:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        // The app's own connection to the sidecar broke:
                        // not the fleet's doing, but counted.
                        Err(_) => {
                            app = None;
                            reconnects.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let r1_before = metric(&replicas[0], OK).await.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r1_during = metric(&replicas[0], OK).await.unwrap_or(0.0);
    assert!(
        r1_during > r1_before,
        "replica 1 had part of the load before it drained"
    );
    replicas[0].server.signal("TERM");
    let down = |s: &[(String, String)]| s.iter().any(|(n, st)| n == "r1" && st.starts_with("DOWN"));
    let states =
        tokio::task::block_in_place(|| lb.wait_servers("replicas", Duration::from_secs(2), down));
    assert!(down(&states), "the balancer saw the drain: {states:?}");
    let exit =
        tokio::task::block_in_place(|| replicas[0].server.wait_exit(Duration::from_secs(20)))
            .expect("replica 1 exits");
    assert!(exit.success(), "{exit:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed, reconnects) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed),
    );
    eprintln!(
        "during the drain, through the sidecar: {ok} requests answered 200, {failed} failed, {reconnects} app reconnects"
    );
    assert_eq!((failed, reconnects), (0, 0));
    assert!(ok > 20, "{ok}");

    // Restarted on its ports, replica 1 takes traffic again.
    let (port, status) = (replicas[0].port, replicas[0].status);
    replicas[0] = start_replica(&dir, port, status);
    let states = lb.wait_servers("replicas", Duration::from_secs(10), up);
    assert!(up(&states), "{states:?}");
    assert!(load(front, &new_key, 9, 1).await.iter().all(|s| *s == 200));
    assert!(
        served(&mut replicas[0]) >= 1,
        "the restarted replica serves"
    );

    // PROXY headers that are wrong, straight to replica 2: each connection
    // is closed, and the replica goes on serving.
    let direct = replicas[1].port;
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x20, 0xfb]);
    let mut oversized = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x07\xd0".to_vec();
    oversized.extend(std::iter::repeat_n(0u8, 2000));
    for (what, from, bytes, shut) in [
        (
            "no header from the balancer",
            None,
            b"\x16\x03\x01\x00\x05hello".to_vec(),
            false,
        ),
        ("malformed", None, b"PROXY TCP9 a b 1 2\r\n".to_vec(), false),
        ("truncated", None, v2[..20].to_vec(), true),
        ("oversized", None, oversized.clone(), false),
        ("a header from a client", Some(CLIENT), v2.clone(), false),
    ] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = from {
            socket.bind((ip, 0).into()).unwrap();
        }
        let mut tcp = socket
            .connect(([127, 0, 0, 1], direct).into())
            .await
            .unwrap();
        tcp.write_all(&bytes).await.unwrap();
        if shut {
            tcp.shutdown().await.unwrap();
        }
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{what}: not closed ({read:?})"
        );
    }
    for code in [
        "proxy_header_missing",
        "proxy_header_malformed",
        "proxy_header_truncated",
        "proxy_header_too_long",
        "proxy_header_untrusted",
    ] {
        // The log arrives through a pipe: give the last lines a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !replicas[1]
            .server
            .read_log()
            .iter()
            .any(|l| l.contains(code))
        {
            assert!(Instant::now() < deadline, "{code} not logged");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A balancer's health check (PROXY LOCAL, then close) is neither a
    // failed handshake nor a dropped connection.
    let mut local = tokio::net::TcpStream::connect(("127.0.0.1", direct))
        .await
        .unwrap();
    local
        .write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
        .await
        .unwrap();
    local.shutdown().await.unwrap();
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(3), local.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handshake_failures = r#"jose_binding_tls_handshakes_total{result="failed"}"#;
    assert_eq!(metric(&replicas[1], handshake_failures).await, None);
    let dropped = r#"jose_binding_connections_dropped_total{reason="handshake"}"#;
    assert_eq!(metric(&replicas[1], dropped).await, None);
    for error in ["missing", "malformed", "truncated", "too_long", "untrusted"] {
        let series =
            format!(r#"jose_binding_proxy_header_errors_total{{error="proxy_header_{error}"}}"#);
        assert_eq!(metric(&replicas[1], &series).await, Some(1.0), "{series}");
    }
    assert!(load(front, &new_key, 3, 1).await.iter().all(|s| *s == 200));
    drop(lb);
}
