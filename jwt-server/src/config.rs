//! Settings: flags, then environment, then the --config file, then the
//! defaults, merged into what serving needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jose_binding::server::ServerOptions;
use jose_binding::{Form, FormSet, Policy};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The --config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) keystore: Option<PathBuf>,
    pub(crate) audience: Option<String>,
    pub(crate) forms: Option<Vec<String>>,
    pub(crate) skew_secs: Option<u64>,
    pub(crate) max_ttl_secs: Option<u64>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_handshakes: Option<usize>,
    pub(crate) max_pending_per_source: Option<usize>,
    pub(crate) eviction_min_age_ms: Option<u64>,
    pub(crate) handshake_timeout_secs: Option<u64>,
    pub(crate) auth_timeout_secs: Option<u64>,
    pub(crate) header_read_timeout_secs: Option<u64>,
    pub(crate) idle_timeout_secs: Option<u64>,
    pub(crate) max_streams: Option<u32>,
    pub(crate) max_send_buf_bytes: Option<usize>,
    pub(crate) refusal_log_per_sec: Option<u32>,
    pub(crate) replay_capacity: Option<usize>,
}

/// A setting from the flag (or its env var), else the config file, else
/// the default.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// Settings after flags, environment, file and defaults are merged.
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) keystore: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) opts: ServerOptions,
}

pub(crate) fn settings(a: &ServeArgs) -> Result<Settings, String> {
    let file: FileConfig = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?;
            toml::from_str(&text)
                .map_err(|e| format!("--config {}: {}", p.display(), e.message()))?
        }
        None => FileConfig::default(),
    };
    let forms = match (&a.forms, &file.forms) {
        (Some(f), _) => f.iter().copied().collect(),
        (None, Some(f)) => f
            .iter()
            .map(|s| s.parse::<Form>().map_err(|e| e.to_string()))
            .collect::<Result<FormSet, _>>()?,
        (None, None) => FormSet::ALL,
    };
    if forms == FormSet::NONE {
        return Err("--forms names no form".into());
    }
    let defaults = Policy::default();
    let opts = ServerOptions::default();
    let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
        flag.or(file)
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(default)
    };
    let opts = ServerOptions {
        max_connections: pick(
            a.max_connections,
            file.max_connections,
            opts.max_connections,
        ),
        max_handshakes: pick(a.max_handshakes, file.max_handshakes, opts.max_handshakes),
        max_pending_per_source: pick(
            a.max_pending_per_source,
            file.max_pending_per_source,
            opts.max_pending_per_source,
        ),
        eviction_min_age: a
            .eviction_min_age_ms
            .or(file.eviction_min_age_ms)
            .map(Duration::from_millis)
            .unwrap_or(opts.eviction_min_age),
        handshake_timeout: secs(
            a.handshake_timeout_secs,
            file.handshake_timeout_secs,
            opts.handshake_timeout,
        ),
        auth_timeout: secs(
            a.auth_timeout_secs,
            file.auth_timeout_secs,
            opts.auth_timeout,
        ),
        header_read_timeout: secs(
            a.header_read_timeout_secs,
            file.header_read_timeout_secs,
            opts.header_read_timeout,
        ),
        idle_timeout: secs(
            a.idle_timeout_secs,
            file.idle_timeout_secs,
            opts.idle_timeout,
        ),
        max_concurrent_streams: pick(a.max_streams, file.max_streams, opts.max_concurrent_streams),
        max_send_buf_size: pick(
            a.max_send_buf_bytes,
            file.max_send_buf_bytes,
            opts.max_send_buf_size,
        ),
        refusal_log_per_sec: pick(
            a.refusal_log_per_sec,
            file.refusal_log_per_sec,
            opts.refusal_log_per_sec,
        ),
        ..opts
    };
    for (name, value) in [
        ("--max-connections", opts.max_connections),
        ("--max-handshakes", opts.max_handshakes),
        ("--max-pending-per-source", opts.max_pending_per_source),
        ("--max-streams", opts.max_concurrent_streams as usize),
    ] {
        if value == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    Ok(Settings {
        listen: a
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
        cert: a
            .cert
            .clone()
            .or(file.cert)
            .unwrap_or_else(|| "fixtures/server.pem".into()),
        key: a
            .key
            .clone()
            .or(file.key)
            .unwrap_or_else(|| "fixtures/server.key".into()),
        keystore: a
            .keystore
            .clone()
            .or(file.keystore)
            .unwrap_or_else(|| "fixtures/keystore.toml".into()),
        policy: Policy {
            audience: a
                .audience
                .clone()
                .or(file.audience)
                .unwrap_or(defaults.audience),
            forms,
            skew_secs: pick(a.skew_secs, file.skew_secs, defaults.skew_secs),
            max_ttl_secs: pick(a.max_ttl_secs, file.max_ttl_secs, defaults.max_ttl_secs),
            replay_capacity: pick(
                a.replay_capacity,
                file.replay_capacity,
                defaults.replay_capacity,
            ),
        },
        opts,
    })
}
