//! What the serving glue records, through the `metrics` facade: every
//! name, kind, label set and help text is declared once, in [`ALL`]. A
//! binary installs a recorder (jwt-server: the Prometheus exporter behind
//! its status listener's `/metrics`) and calls [`describe`]; without one,
//! recording is a no-op.
//!
//! Labels take values from fixed sets only (codes, forms, budgets,
//! reasons), so the number of series is bounded; the one exception, the
//! client id on requests, is off unless a server opts in
//! ([`ServerOptions::metrics_client_labels`](crate::server::ServerOptions)).

use std::time::Duration;

/// A metric's type, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (durations, in seconds).
    Histogram,
}

/// One metric: its name, type, labels and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name, with its unit and `_total` as Prometheus has them.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The label names; each takes values from a fixed set.
    pub labels: &'static [&'static str],
    /// What it counts or measures.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        // A build without a feature (proxy-protocol) records fewer.
        $(#[allow(dead_code)] pub(crate) const $id: &str = $name;)*
        /// Every metric the library records.
        pub const ALL: &[Metric] = &[$(Metric {
            name: $name,
            kind: MetricKind::$kind,
            labels: &[$($label),*],
            help: $help,
        }),*];
    };
}

metrics! {
    REQUESTS = "jose_binding_requests_total", Counter, ["outcome", "form"],
        "Requests answered, by outcome (ok, a §7 error code, or none when no token was checked) and token form (or none).";
    REQUEST_DURATION = "jose_binding_request_duration_seconds", Histogram, [],
        "From a request's arrival to its response head.";
    VERIFY_DURATION = "jose_binding_verify_duration_seconds", Histogram, [],
        "Checking one token (steps 1-14), accepted or refused.";
    KEY_SCHEDULE_DURATION = "jose_binding_key_schedule_duration_seconds", Histogram, ["key"],
        "Deriving a connection's subkeys from a root key and the EKM, by where the root key is (software, tpm).";
    TLS_HANDSHAKES = "jose_binding_tls_handshakes_total", Counter, ["result"],
        "TLS handshakes, by result (ok, failed, timeout).";
    CONNECTIONS = "jose_binding_connections", Gauge, ["state"],
        "Connections held, by state (handshaking, unauthenticated, authenticated).";
    CONNECTIONS_DROPPED = "jose_binding_connections_dropped_total", Counter, ["reason"],
        "Connections the server closed, by reason (refused, evicted, handshake, auth_deadline, idle, proxy_header, not_frontend).";
    EVICTIONS = "jose_binding_admission_evictions_total", Counter, ["budget"],
        "Unauthenticated connections closed to make room, by the budget that was full (connections, handshakes, pending_per_source).";
    REFUSALS = "jose_binding_admission_refusals_total", Counter, ["budget"],
        "New connections refused because a budget was full and nothing in it could be evicted yet.";
    PROXY_HEADER_ERRORS = "jose_binding_proxy_header_errors_total", Counter, ["error"],
        "Connections closed for their PROXY protocol header (missing, untrusted, malformed, too_long, truncated).";
    REPLAY_CACHE_FULL = "jose_binding_replay_cache_full_total", Counter, [],
        "Tokens refused because their connection's replay cache was full of unexpired entries.";
    KEYSTORE_RELOADS = "jose_binding_keystore_reloads_total", Counter, ["result"],
        "Keystore reloads, by result (success, failure); a failure keeps the keys in force.";
    KEYSTORE_LAST_RELOAD = "jose_binding_keystore_last_reload_success_timestamp_seconds", Gauge, [],
        "When the keystore in force was loaded (Unix time).";
    KEYSTORE_CLIENTS = "jose_binding_keystore_clients", Gauge, [],
        "Clients in the keystore in force.";
    KEYSTORE_KEYS = "jose_binding_keystore_keys", Gauge, [],
        "Root keys in the keystore in force, all clients.";
    KEYSTORE_VERSION = "jose_binding_keystore_version", Gauge, [],
        "The keystore in force: 48 bits of a hash of its client ids and key fingerprints, equal on replicas with the same keys.";
    UPSTREAM_RESPONSES = "jose_binding_upstream_responses_total", Counter, ["class"],
        "The gateway's upstream answers, by status class (1xx to 5xx, or error when there was none).";
    UPSTREAM_DURATION = "jose_binding_upstream_duration_seconds", Histogram, [],
        "From a request's arrival at the gateway to the upstream's response head.";
    BUILD_INFO = "jose_binding_build_info", Gauge, ["version"],
        "Always 1; the version of the binary serving.";
}

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for m in ALL {
        match m.kind {
            MetricKind::Counter => ::metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => ::metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => ::metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Sets `jose_binding_build_info{version}` to 1.
pub fn build_info(version: &'static str) {
    ::metrics::gauge!(BUILD_INFO, "version" => version).set(1.0);
}

/// A duration observed in seconds.
pub(crate) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The status class label of an upstream answer.
pub(crate) fn status_class(status: Option<u16>) -> &'static str {
    match status.map(|s| s / 100) {
        Some(1) => "1xx",
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("jose_binding_"), "{}", m.name);
            assert!(
                m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                m.name
            );
            match m.kind {
                MetricKind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                MetricKind::Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                MetricKind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
        }
    }
}
