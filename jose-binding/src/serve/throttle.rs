//! Bounded logging under attack, and the counters behind it.
//!
//! Refused requests and dropped connections are what an attacker can make
//! as many of as it likes, so their log lines pass at most
//! [`LogBudget::per_sec`] a second; the rest are counted, and a summary line
//! a second says how many were suppressed. Successful requests are not
//! throttled: each keeps its access line.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// A per-second allowance of log lines, lock-free.
#[derive(Debug)]
pub(crate) struct LogBudget {
    per_sec: u32,
    base: Instant,
    /// The second (since `base`) the allowance below belongs to.
    window: AtomicU64,
    used: AtomicU32,
    suppressed: AtomicU64,
}

impl LogBudget {
    pub(crate) fn new(per_sec: u32) -> Self {
        LogBudget {
            per_sec,
            base: Instant::now(),
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True if one more line may be written now; otherwise it is counted as
    /// suppressed. Two threads crossing a second's boundary together may let
    /// a line or two more through; the bound stays per_sec plus the number
    /// of worker threads.
    pub(crate) fn allow(&self) -> bool {
        let now = self.base.elapsed().as_secs();
        let w = self.window.load(Ordering::Relaxed);
        if w != now
            && self
                .window
                .compare_exchange(w, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_sec {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Lines suppressed since the last call.
    pub(crate) fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }
}

/// Why a connection was closed or refused by the server, not by its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// No room at accept and nothing evictable.
    Refused,
    /// Closed to make room for a newer connection.
    Evicted,
    /// TLS handshake failed or did not finish in time.
    Handshake,
    /// No accepted token before the authentication deadline.
    AuthDeadline,
    /// No request or response traffic for the idle timeout.
    Idle,
    /// A PROXY protocol header missing from a trusted balancer, sent by
    /// another peer, or malformed.
    #[cfg_attr(not(feature = "proxy-protocol"), allow(dead_code))]
    ProxyHeader,
    /// A peer that is not one of the frontends, in frontend mode.
    #[cfg_attr(not(feature = "frontend"), allow(dead_code))]
    NotFrontend,
}

impl Dropped {
    #[cfg(test)]
    pub(crate) const ALL: [Dropped; 7] = [
        Dropped::Refused,
        Dropped::Evicted,
        Dropped::Handshake,
        Dropped::AuthDeadline,
        Dropped::Idle,
        Dropped::ProxyHeader,
        Dropped::NotFrontend,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Dropped::Refused => "refused",
            Dropped::Evicted => "evicted",
            Dropped::Handshake => "handshake",
            Dropped::AuthDeadline => "auth_deadline",
            Dropped::Idle => "idle",
            Dropped::ProxyHeader => "proxy_header",
            Dropped::NotFrontend => "not_frontend",
        }
    }
}

/// Running totals since start; read them for metrics or the summary line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    dropped: [AtomicU64; 7],
    /// Requests answered with a 4xx (a §7 refusal, 404, 405 …).
    pub requests_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn dropped(&self, why: Dropped) -> &AtomicU64 {
        &self.dropped[why as usize]
    }

    pub(crate) fn count_dropped(&self, why: Dropped) {
        self.dropped(why).fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_per_sec_then_counts_the_rest() {
        let b = LogBudget::new(3);
        let allowed = (0..100).filter(|_| b.allow()).count();
        // All 100 fit in one second on any machine; at a boundary the count
        // may restart once.
        assert!((3..=6).contains(&allowed), "{allowed}");
        assert_eq!(b.take_suppressed() as usize, 100 - allowed);
        assert_eq!(b.take_suppressed(), 0);
    }

    #[test]
    fn budget_refills_each_second() {
        let b = LogBudget::new(1);
        assert!(b.allow());
        // Move the window back a second instead of sleeping.
        b.window.store(u64::MAX, Ordering::Relaxed);
        assert!(b.allow());
    }

    #[test]
    fn dropped_indexes_match_all() {
        for (i, d) in Dropped::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
        let c = Counters::default();
        c.count_dropped(Dropped::Idle);
        assert_eq!(c.dropped(Dropped::Idle).load(Ordering::Relaxed), 1);
        assert_eq!(c.dropped(Dropped::Evicted).load(Ordering::Relaxed), 0);
    }
}
