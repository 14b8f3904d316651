//! `/metrics` on the status listener: the Prometheus text format, names
//! from the one declared list, that list the same as docs/OPERATIONS.md's
//! table, and the counters moving with the traffic.

mod support;

use std::collections::BTreeSet;

use jose_binding::metrics::{MetricKind, ALL};
use jose_binding_e2e::upstream::{free_port, plain_get};
use support::{repo, sample, signed_request, Server};

#[test]
fn the_documented_list_is_the_declared_list() {
    let doc = include_str!("../../docs/OPERATIONS.md");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `jose_binding_")?.split('`').next())
        .collect();
    let declared: BTreeSet<&str> = ALL
        .iter()
        .map(|m| m.name.trim_start_matches("jose_binding_"))
        .collect();
    assert_eq!(documented, declared, "docs/OPERATIONS.md's metrics table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_the_prometheus_format_and_move_with_traffic() {
    let status = free_port();
    let status_listen = format!("127.0.0.1:{status}");
    let args = [
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--status-listen",
        &status_listen,
    ];
    let server = Server::start(&args, &repo(), &[]).expect("server starts");
    for _ in 0..3 {
        assert_eq!(signed_request(server.port).await, 200);
    }
    let resp = plain_get(status, "/metrics").await;
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );

    // Every name served is declared, with its declared type.
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line["# TYPE ".len()..].split(' ');
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let m = ALL
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is served but not declared"));
        let want = match m.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert_eq!(kind, want, "{name}");
    }
    let ok = r#"jose_binding_requests_total{outcome="ok",form="signed"}"#;
    assert_eq!(sample(body, ok), Some(3.0), "{body}");
    assert_eq!(
        sample(body, r#"jose_binding_tls_handshakes_total{result="ok"}"#),
        Some(3.0)
    );
    assert_eq!(sample(body, "jose_binding_keystore_clients"), Some(2.0));
    assert!(sample(body, "jose_binding_keystore_version").is_some_and(|v| v > 0.0));
    assert_eq!(
        sample(body, r#"jose_binding_build_info{version="0.1.0"}"#),
        Some(1.0)
    );
    assert!(
        body.contains("jose_binding_verify_duration_seconds_bucket{le=\""),
        "durations are histograms with buckets"
    );
    assert_eq!(
        sample(body, "jose_binding_verify_duration_seconds_count"),
        Some(3.0)
    );

    // Wrong method, unknown path.
    assert!(plain_get(status, "/metricz")
        .await
        .starts_with("HTTP/1.1 404"));
}
