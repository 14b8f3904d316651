//! A gigabyte each way through the chain curl -> `jwt-client proxy` (a
//! real process) -> gateway -> nginx: bodies stream, and the sidecar's
//! memory stays bounded. `-- --nocapture` prints the figures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use jose_binding::gateway::GatewayConfig;
use jose_binding_e2e::process::proc_status;
use jose_binding_e2e::upstream::{free_port, HyperUpstream, Nginx};
use jose_binding_e2e::{fixtures, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-client");
const GIB: u64 = 1 << 30;
/// Most the sidecar's peak RSS may grow over its warmed-up size.
const RSS_GROWTH_BOUND_KIB: u64 = 12 * 1024;

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl's output with `status bytes-down bytes-up` after it.
async fn curl_sizes(args: Vec<String>) -> String {
    let mut all = vec![
        "-s".into(),
        "-S".into(),
        "-w".into(),
        "%{http_code} %{size_download} %{size_upload}".into(),
    ];
    all.extend(args);
    let out = jose_binding_e2e::curl(all).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_each_way_through_the_sidecar() {
    let hyper = HyperUpstream::start().await;
    let (nginx, big) = Nginx::streaming("sidecar-stream", &hyper.url(), GIB);
    let gateway = TestServer::gateway(GatewayConfig::new(nginx.url().parse().unwrap())).await;

    let port = free_port();
    let mut child = Kill(
        Command::new(BIN)
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--server", &format!("https://localhost:{}", gateway.port)])
            .args(["--client-id", "client1", "--connections", "2"])
            .arg("--key-file")
            .arg(fixtures().join("client1.key"))
            .arg("--ca")
            .arg(fixtures().join("ca.pem"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("jwt-client proxy ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{port}");

    // Warm up both directions, then the idle size.
    let out = curl_sizes(vec![
        "-o".into(),
        "/dev/null".into(),
        format!("{base}/upload"),
        "--data-binary".into(),
        "x".into(),
    ])
    .await;
    assert!(out.starts_with("200"), "{out}");
    let idle = proc_status(pid, "VmRSS:");

    let start = Instant::now();
    let out = curl_sizes(vec!["-o".into(), "/dev/null".into(), format!("{base}/big")]).await;
    let down = start.elapsed();
    assert_eq!(out, format!("200 {GIB} 0"));

    let start = Instant::now();
    let before = hyper
        .seen
        .uploaded
        .load(std::sync::atomic::Ordering::SeqCst);
    let out = curl_sizes(vec![
        format!("{base}/upload"),
        // -T streams the file (--data-binary would read it all first).
        "-T".into(),
        big.display().to_string(),
    ])
    .await;
    let up = start.elapsed();
    assert!(out.starts_with(&format!("{GIB}200")), "{out}");
    let after = hyper
        .seen
        .uploaded
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after - before, GIB);

    let peak = proc_status(pid, "VmHWM:");
    println!(
        "1 GiB down in {:.1} s, up in {:.1} s through sidecar and gateway; sidecar RSS idle {idle} KiB, peak {peak} KiB (+{} KiB)",
        down.as_secs_f64(),
        up.as_secs_f64(),
        peak.saturating_sub(idle)
    );
    assert!(
        peak.saturating_sub(idle) <= RSS_GROWTH_BOUND_KIB,
        "the sidecar's RSS grew by {} KiB",
        peak - idle
    );
}
