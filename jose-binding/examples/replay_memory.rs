//! Memory of full replay caches, from the process's RSS (docs/PROTOCOL.md):
//! `cargo run --release -p jose-binding --example replay_memory`.
//!
//! Fills 64 caches of the default capacity the way a busy client does (1000
//! tokens per second, expiries advancing) and divides the RSS growth by the
//! entries held.

use jose_binding::ReplayCache;

const DEFAULT_CAPACITY: usize = ReplayCache::DEFAULT_CAPACITY;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    const CACHES: usize = 64;
    let before = rss_kib();
    let mut caches: Vec<ReplayCache> = (0..CACHES)
        .map(|_| ReplayCache::new(DEFAULT_CAPACITY))
        .collect();
    for (n, cache) in caches.iter_mut().enumerate() {
        for i in 0..DEFAULT_CAPACITY {
            let now = 1_767_225_600.0 + (i / 1000) as f64;
            let jti = format!("{n:04}-{i:018}");
            let _ = cache.check_and_insert(&jti, now + 60.0, now - 30.0);
        }
    }
    let after = rss_kib();
    let entries: usize = caches.iter().map(ReplayCache::len).sum();
    let per_entry = (after - before) as f64 * 1024.0 / entries as f64;
    println!(
        "{CACHES} caches, {entries} entries: RSS +{} KiB, {per_entry:.0} bytes per entry, \
         {:.0} KiB per full cache of {DEFAULT_CAPACITY}",
        after - before,
        per_entry * DEFAULT_CAPACITY as f64 / 1024.0
    );
}
