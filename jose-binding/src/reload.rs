//! Keystore hot reload: on SIGHUP, and when the file changes (polled, which
//! also catches editors and tools that replace the file by rename).
//!
//! A file that fails to load is logged and the keys in force stay in force.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::keystore::{Keystore, KeystoreHandle};

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
            handle.replace(ks);
            tracing::info!(path = %path.display(), clients = n, "keystore reloaded");
            true
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "keystore reload failed; previous keys stay in force");
            false
        }
    }
}

/// Watches `path` until the task is dropped: SIGHUP forces a reload, and the
/// file is checked for changes every `poll`.
pub async fn watch(handle: KeystoreHandle, path: PathBuf, poll: Duration) {
    let mut last = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let forced = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                _ = tick.tick() => false,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        #[cfg(not(unix))]
        let forced = {
            tick.tick().await;
            false
        };
        let now = stamp(&path);
        if forced || now != last {
            if forced {
                tracing::info!("SIGHUP: reloading keystore");
            }
            reload(&handle, &path);
            last = now;
        }
    }
}
