//! Hot reload of the keystore, and of the server's certificate and key: on
//! SIGHUP, and when a file changes (polled, which also catches editors and
//! tools that replace the file by rename).
//!
//! A file that fails to load is logged and what is in force stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::keys::keystore::{Keystore, KeystoreHandle};
use crate::serve::metrics as m;
use crate::serve::tls::{self, CertSummary, ReloadableCert};

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&m),
    })
}

/// Loads `path` into `handle`; on error logs and keeps the old keystore.
/// Returns whether the new file took effect.
pub fn reload(handle: &KeystoreHandle, path: &Path) -> bool {
    match Keystore::load(path) {
        Ok(ks) => {
            let n = ks.len();
            let version = keystore_version(&ks);
            handle.replace(ks);
            metrics::counter!(m::KEYSTORE_RELOADS, "result" => "success").increment(1);
            record_in_force(handle);
            tracing::info!(path = %path.display(), clients = n, version, "keystore reloaded");
            true
        }
        Err(e) => {
            metrics::counter!(m::KEYSTORE_RELOADS, "result" => "failure").increment(1);
            tracing::error!(path = %path.display(), error = %e, "keystore reload failed; previous keys stay in force");
            false
        }
    }
}

/// The keystore's gauges: clients, keys, version, and now as the time of
/// its load.
fn record_in_force(handle: &KeystoreHandle) {
    let ks = handle.snapshot();
    let keys: usize = ks.clients().map(|c| c.keys.len()).sum();
    metrics::gauge!(m::KEYSTORE_CLIENTS).set(ks.len() as f64);
    metrics::gauge!(m::KEYSTORE_KEYS).set(keys as f64);
    metrics::gauge!(m::KEYSTORE_VERSION).set(keystore_version(&ks) as f64);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    metrics::gauge!(m::KEYSTORE_LAST_RELOAD).set(now.as_secs_f64());
}

/// 48 bits of SHA-256 over the client ids and their keys' fingerprints (in
/// id order): replicas with the same keys show the same number, and it
/// says nothing of a key that its fingerprint does not.
pub fn keystore_version(ks: &Keystore) -> u64 {
    use sha2::{Digest, Sha256};
    let mut clients: Vec<_> = ks.clients().collect();
    clients.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut h = Sha256::new();
    for c in clients {
        h.update(c.id.as_str().as_bytes());
        for k in &c.keys {
            h.update(b":");
            h.update(crate::RootKey::fingerprint(k).to_string().as_bytes());
        }
        h.update(b"\n");
    }
    let d = h.finalize();
    u64::from_be_bytes([0, 0, d[0], d[1], d[2], d[3], d[4], d[5]])
}

/// Loads the pair in `cert` and `key` into `current` if it loads and the
/// key belongs to the certificate; else logs why (no key material) and
/// keeps the pair in force. Returns whether the new pair took effect.
pub fn reload_certificate(current: &ReloadableCert, cert: &Path, key: &Path) -> bool {
    match tls::load_certified_key(cert, key) {
        Ok(pair) => {
            let summary = pair.cert.first().and_then(|c| CertSummary::of(c));
            current.replace(pair);
            tracing::info!(
                cert = %cert.display(),
                subject = summary.as_ref().map(|s| s.subject.as_str()).unwrap_or("?"),
                not_after = summary.as_ref().map(|s| s.not_after.as_str()).unwrap_or("?"),
                "certificate reloaded"
            );
            true
        }
        Err(e) => {
            tracing::error!(cert = %cert.display(), key = %key.display(), error = %e, "certificate reload failed; the certificate in force stays");
            false
        }
    }
}

/// Watches the certificate and key files until the task is dropped, as
/// [`watch`] does the keystore: SIGHUP forces a reload, and a change of
/// either file is looked for every `poll`. New handshakes get the new
/// pair; open connections keep the one they were made with.
///
/// SIGHUP is caught from this call on, not from the future's first poll:
/// call it (inside the runtime) before saying the server is ready, so a
/// SIGHUP sent on that word reloads rather than ends the process.
pub fn watch_certificate(
    current: Arc<ReloadableCert>,
    cert: PathBuf,
    key: PathBuf,
    poll: Duration,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut last = (stamp(&cert), stamp(&key));
    let mut changes = Changes::new(poll);
    async move {
        loop {
            let forced = changes.next().await;
            let now = (stamp(&cert), stamp(&key));
            if forced || now != last {
                if forced {
                    tracing::info!("SIGHUP: reloading the certificate and key");
                }
                reload_certificate(&current, &cert, &key);
                last = now;
            }
        }
    }
}

/// The poll clock, and SIGHUP where there is one.
struct Changes {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    tick: tokio::time::Interval,
}

impl Changes {
    fn new(poll: Duration) -> Changes {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Changes {
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
            tick,
        }
    }

    /// Waits for the next tick (false) or SIGHUP (true).
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        if let Some(h) = self.hup.as_mut() {
            return tokio::select! {
                _ = h.recv() => true,
                _ = self.tick.tick() => false,
            };
        }
        self.tick.tick().await;
        false
    }
}

/// Watches `path` until the task is dropped: SIGHUP forces a reload, and the
/// file is checked for changes every `poll`.
///
/// SIGHUP is caught from this call on (see [`watch_certificate`]).
pub fn watch(
    handle: KeystoreHandle,
    path: PathBuf,
    poll: Duration,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    record_in_force(&handle);
    watch_file(path, poll, move |path, forced| {
        if forced {
            tracing::info!("SIGHUP: reloading keystore");
        }
        reload(&handle, path);
    })
}

/// Calls `changed(path, forced)` on SIGHUP (`forced`) and whenever `path`
/// changes (checked every `poll`: the inode, size and modification time of
/// what it names, through symlinks), until the task is dropped. What a change means is
/// the caller's: the gateway's routes, say.
///
/// SIGHUP is caught from this call on (see [`watch_certificate`]).
pub fn watch_file(
    path: PathBuf,
    poll: Duration,
    mut changed: impl FnMut(&Path, bool) + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut last = stamp(&path);
    let mut changes = Changes::new(poll);
    async move {
        loop {
            let forced = changes.next().await;
            let mut now = stamp(&path);
            if forced || now != last {
                // A file written in place can be caught half-written (an
                // empty keystore, a route table cut before its rules):
                // act once it has stood still for a moment.
                loop {
                    tokio::time::sleep(SETTLE).await;
                    let again = stamp(&path);
                    if again == now {
                        break;
                    }
                    now = again;
                }
                changed(&path, forced);
                last = now;
            }
        }
    }
}

/// How long a changed file must stand still before it is read.
const SETTLE: Duration = Duration::from_millis(200);
