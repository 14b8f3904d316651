//! Who may hold a connection slot.
//!
//! A connection is *pending* from accept until the first token accepted on
//! it (TLS handshake included), then *authenticated*. Pending connections
//! cost an attacker nothing, so they must never hold what authenticated
//! clients need: when a budget is full, the oldest pending connection that
//! has had [`Budgets::eviction_min_age`] to authenticate is closed to admit
//! the newcomer, and an authenticated connection is never closed for a
//! pending one. Three budgets apply at accept:
//!
//! - all connections ([`Budgets::max_connections`]);
//! - connections still in the TLS handshake ([`Budgets::max_handshakes`]);
//! - pending connections from one source address
//!   ([`Budgets::max_pending_per_source`]).
//!
//! Only when every candidate for eviction is younger than the minimum age
//! (a burst of new connections) is the newcomer refused; its client retries,
//! and by then the squatters are old enough to go.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::serve::metrics as m;

/// The limits the table enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budgets {
    /// Connections held at once, pending and authenticated.
    pub max_connections: usize,
    /// Connections in the TLS handshake at once.
    pub max_handshakes: usize,
    /// Pending connections from one source address at once.
    pub max_pending_per_source: usize,
    /// How long a pending connection is safe from eviction: a real client
    /// finishes its handshake and sends its first token well within it.
    pub eviction_min_age: Duration,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_connections: 1024,
            max_handshakes: 256,
            max_pending_per_source: 256,
            eviction_min_age: Duration::from_secs(1),
        }
    }
}

/// Which budget made room, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    Connections,
    Handshakes,
    PendingPerSource,
}

impl Budget {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Budget::Connections => "connections",
            Budget::Handshakes => "handshakes",
            Budget::PendingPerSource => "pending_per_source",
        }
    }
}

/// A newcomer refused: the budget is full and nothing in it may be evicted
/// yet (all authenticated, or all pending ones younger than the minimum age).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused(pub Budget);

/// What admitting a connection did to make room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// Budgets whose oldest eligible pending connection was closed, one
    /// entry per eviction.
    pub evicted: Vec<Budget>,
}

#[derive(Debug)]
struct Entry {
    /// `None` until a balancer's PROXY header names the client.
    source: Option<IpAddr>,
    since: Instant,
    handshaking: bool,
    evict: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Pending connections by id; ids grow with accept time, so the first
    /// entry is the oldest.
    pending: BTreeMap<u64, Entry>,
    authenticated: usize,
    handshaking: usize,
    pending_by_source: HashMap<IpAddr, usize>,
}

impl Table {
    fn total(&self) -> usize {
        self.pending.len() + self.authenticated
    }

    /// The oldest pending connection matching `f`, if it is old enough to
    /// evict. Only the oldest match is considered: a younger one is younger
    /// still.
    fn oldest(
        &self,
        now: Instant,
        min_age: Duration,
        f: impl Fn(u64, &Entry) -> bool,
    ) -> Option<u64> {
        self.pending
            .iter()
            .find(|(&id, e)| f(id, e))
            .filter(|(_, e)| now.saturating_duration_since(e.since) >= min_age)
            .map(|(&id, _)| id)
    }

    /// Removes a pending entry and tells its task to close. True if it was there.
    fn evict(&mut self, id: u64) -> bool {
        match self.remove_pending(id) {
            Some(e) => {
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn remove_pending(&mut self, id: u64) -> Option<Entry> {
        let e = self.pending.remove(&id)?;
        if e.handshaking {
            self.handshaking -= 1;
        }
        if let Some(source) = e.source {
            if let Some(n) = self.pending_by_source.get_mut(&source) {
                *n -= 1;
                if *n == 0 {
                    self.pending_by_source.remove(&source);
                }
            }
        }
        Some(e)
    }

    fn pending_from(&self, source: IpAddr) -> usize {
        self.pending_by_source.get(&source).copied().unwrap_or(0)
    }
}

/// The shared table of connections; one per listener.
#[derive(Debug)]
pub(crate) struct Admission {
    budgets: Budgets,
    table: Mutex<Table>,
    gauges: Gauges,
}

/// `jose_binding_connections{state}`, set from the table after each change.
struct Gauges {
    handshaking: metrics::Gauge,
    unauthenticated: metrics::Gauge,
    authenticated: metrics::Gauge,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauges")
    }
}

impl Gauges {
    fn new() -> Self {
        let state = |s: &'static str| metrics::gauge!(m::CONNECTIONS, "state" => s);
        Gauges {
            handshaking: state("handshaking"),
            unauthenticated: state("unauthenticated"),
            authenticated: state("authenticated"),
        }
    }

    fn publish(&self, t: &Table) {
        self.handshaking.set(t.handshaking as f64);
        self.unauthenticated
            .set((t.pending.len() - t.handshaking) as f64);
        self.authenticated.set(t.authenticated as f64);
    }
}

impl Admission {
    pub(crate) fn new(budgets: Budgets) -> Arc<Self> {
        Arc::new(Admission {
            budgets,
            table: Mutex::new(Table::default()),
            gauges: Gauges::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent at every await-free step, so a panic
        // elsewhere while holding it leaves nothing half-done.
        match self.table.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Admits a new connection from `source`, in the handshake, closing
    /// pending connections to make room where a budget is full.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> Result<(Ticket, Admitted), Refused> {
        self.admit_at(Some(source), Instant::now())
    }

    /// Admits a connection from a trusted balancer, whose client is not
    /// known until its PROXY header: the per-source budget applies once
    /// [`Ticket::set_source`] names the client.
    #[cfg_attr(not(feature = "proxy-protocol"), allow(dead_code))]
    pub(crate) fn admit_unresolved(self: &Arc<Self>) -> Result<(Ticket, Admitted), Refused> {
        self.admit_at(None, Instant::now())
    }

    fn admit_at(
        self: &Arc<Self>,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<(Ticket, Admitted), Refused> {
        let b = &self.budgets;
        let min_age = b.eviction_min_age;
        let mut t = self.table();
        // Decide every eviction before making any, so a refusal leaves the
        // table as it was. Each budget evicts at most one, and never one
        // already chosen for another budget.
        let mut victims: Vec<(u64, Budget)> = Vec::new();
        let chosen = |victims: &[(u64, Budget)], id: u64| victims.iter().any(|(v, _)| *v == id);
        if let Some(source) = source {
            if t.pending_from(source) >= b.max_pending_per_source {
                let id = t
                    .oldest(now, min_age, |_, e| e.source == Some(source))
                    .ok_or(Refused(Budget::PendingPerSource))?;
                victims.push((id, Budget::PendingPerSource));
            }
        }
        let handshakes_freed = victims
            .iter()
            .filter(|(id, _)| t.pending.get(id).is_some_and(|e| e.handshaking))
            .count();
        if t.handshaking - handshakes_freed >= b.max_handshakes {
            let id = t
                .oldest(now, min_age, |id, e| e.handshaking && !chosen(&victims, id))
                .ok_or(Refused(Budget::Handshakes))?;
            victims.push((id, Budget::Handshakes));
        }
        if t.total() - victims.len() >= b.max_connections {
            let id = t
                .oldest(now, min_age, |id, _| !chosen(&victims, id))
                .ok_or(Refused(Budget::Connections))?;
            victims.push((id, Budget::Connections));
        }
        let mut admitted = Admitted::default();
        for (id, budget) in victims {
            if t.evict(id) {
                admitted.evicted.push(budget);
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.pending.insert(
            id,
            Entry {
                source,
                since: now,
                handshaking: true,
                evict: evict.clone(),
            },
        );
        t.handshaking += 1;
        if let Some(source) = source {
            *t.pending_by_source.entry(source).or_insert(0) += 1;
        }
        self.gauges.publish(&t);
        drop(t);
        Ok((
            Ticket {
                admission: self.clone(),
                id,
                evict,
                authenticated: std::sync::atomic::AtomicBool::new(false),
            },
            admitted,
        ))
    }

    /// Connections held now: (pending, of which in the handshake, authenticated).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let t = self.table();
        (t.pending.len(), t.handshaking, t.authenticated)
    }
}

/// One connection's place in the table; leaving it (drop) frees the slot.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    evict: Arc<Notify>,
    authenticated: std::sync::atomic::AtomicBool,
}

impl Ticket {
    /// The TLS handshake finished: the connection leaves the handshake budget.
    pub(crate) fn handshake_done(&self) {
        let mut t = self.admission.table();
        if let Some(e) = t.pending.get_mut(&self.id) {
            if e.handshaking {
                e.handshaking = false;
                t.handshaking -= 1;
            }
        }
        self.admission.gauges.publish(&t);
    }

    /// Names the client of a connection admitted unresolved, and applies
    /// the per-source budget to it: the oldest pending connection of that
    /// client old enough makes room, or the connection is refused. Nothing
    /// to do for a connection already evicted or authenticated.
    #[cfg_attr(not(feature = "proxy-protocol"), allow(dead_code))]
    pub(crate) fn set_source(&self, source: IpAddr) -> Result<Admitted, Refused> {
        self.set_source_at(source, Instant::now())
    }

    fn set_source_at(&self, source: IpAddr, now: Instant) -> Result<Admitted, Refused> {
        let b = self.admission.budgets;
        let mut t = self.admission.table();
        match t.pending.get(&self.id) {
            Some(e) if e.source.is_none() => {}
            _ => return Ok(Admitted::default()),
        }
        let mut admitted = Admitted::default();
        if t.pending_from(source) >= b.max_pending_per_source {
            let me = self.id;
            let victim = t
                .oldest(now, b.eviction_min_age, |id, e| {
                    id != me && e.source == Some(source)
                })
                .ok_or(Refused(Budget::PendingPerSource))?;
            if t.evict(victim) {
                admitted.evicted.push(Budget::PendingPerSource);
            }
        }
        if let Some(e) = t.pending.get_mut(&self.id) {
            e.source = Some(source);
        }
        *t.pending_by_source.entry(source).or_insert(0) += 1;
        self.admission.gauges.publish(&t);
        Ok(admitted)
    }

    /// A token was accepted: the connection is authenticated and can no
    /// longer be evicted. Cheap after the first call.
    pub(crate) fn authenticate(&self) {
        use std::sync::atomic::Ordering;
        if self.authenticated.load(Ordering::Relaxed) {
            return;
        }
        let mut t = self.admission.table();
        // Evicted meanwhile: the connection is closing; do not count it.
        if t.remove_pending(self.id).is_some() {
            t.authenticated += 1;
            self.authenticated.store(true, Ordering::Relaxed);
        }
        self.admission.gauges.publish(&t);
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.authenticated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when the table closes this connection to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        if self.is_authenticated() {
            t.authenticated -= 1;
        } else {
            t.remove_pending(self.id);
        }
        self.admission.gauges.publish(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    fn table(max_connections: usize, max_handshakes: usize, per_source: usize) -> Arc<Admission> {
        Admission::new(Budgets {
            max_connections,
            max_handshakes,
            max_pending_per_source: per_source,
            eviction_min_age: Duration::from_secs(1),
        })
    }

    fn evicted_now(t: &Ticket) -> bool {
        let f = t.evicted();
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        f.as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }

    use std::future::Future;

    #[test]
    fn full_table_evicts_the_oldest_pending_once_it_is_old_enough() {
        let adm = table(2, 10, 10);
        let t0 = Instant::now();
        let (a, _) = adm.admit_at(Some(A), t0).unwrap();
        let (b, _) = adm
            .admit_at(Some(A), t0 + Duration::from_millis(10))
            .unwrap();
        // Both are younger than the minimum age: the newcomer is refused.
        assert_eq!(
            adm.admit_at(Some(B), t0 + Duration::from_millis(500))
                .unwrap_err(),
            Refused(Budget::Connections)
        );
        assert!(!evicted_now(&a) && !evicted_now(&b));
        // A second later the oldest goes.
        let (c, made) = adm.admit_at(Some(B), t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(made.evicted, vec![Budget::Connections]);
        assert!(evicted_now(&a));
        assert!(!evicted_now(&b) && !evicted_now(&c));
        assert_eq!(adm.counts(), (2, 2, 0));
        drop(a);
        assert_eq!(
            adm.counts(),
            (2, 2, 0),
            "an evicted ticket frees nothing twice"
        );
    }

    #[test]
    fn authenticated_connections_are_never_evicted() {
        let adm = table(2, 10, 10);
        let t0 = Instant::now();
        let (a, _) = adm.admit_at(Some(A), t0).unwrap();
        let (b, _) = adm.admit_at(Some(A), t0).unwrap();
        a.handshake_done();
        a.authenticate();
        b.handshake_done();
        b.authenticate();
        assert_eq!(adm.counts(), (0, 0, 2));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            adm.admit_at(Some(B), later).unwrap_err(),
            Refused(Budget::Connections)
        );
        assert!(!evicted_now(&a) && !evicted_now(&b));
        // One authenticated and one old pending: the pending one goes.
        drop(b);
        let (c, _) = adm.admit_at(Some(A), t0).unwrap();
        let (_d, made) = adm.admit_at(Some(B), later).unwrap();
        assert_eq!(made.evicted, vec![Budget::Connections]);
        assert!(evicted_now(&c) && !evicted_now(&a));
        assert_eq!(adm.counts(), (1, 1, 1));
    }

    #[test]
    fn handshake_budget_evicts_only_handshaking_connections() {
        let adm = table(100, 1, 100);
        let t0 = Instant::now();
        let (done, _) = adm.admit_at(Some(A), t0).unwrap();
        done.handshake_done();
        let (shaking, _) = adm
            .admit_at(Some(A), t0 + Duration::from_millis(1))
            .unwrap();
        let later = t0 + Duration::from_secs(2);
        let (_new, made) = adm.admit_at(Some(B), later).unwrap();
        assert_eq!(made.evicted, vec![Budget::Handshakes]);
        assert!(evicted_now(&shaking));
        assert!(
            !evicted_now(&done),
            "out of the handshake, out of its budget"
        );
    }

    #[test]
    fn per_source_budget_evicts_within_that_source_only() {
        let adm = table(100, 100, 2);
        let t0 = Instant::now();
        let (b1, _) = adm.admit_at(Some(B), t0).unwrap();
        let (a1, _) = adm.admit_at(Some(A), t0).unwrap();
        let (a2, _) = adm.admit_at(Some(A), t0).unwrap();
        // Another source is not affected by A's budget.
        let (_b2, made) = adm.admit_at(Some(B), t0).unwrap();
        assert!(made.evicted.is_empty());
        let later = t0 + Duration::from_secs(2);
        let (_a3, made) = adm.admit_at(Some(A), later).unwrap();
        assert_eq!(made.evicted, vec![Budget::PendingPerSource]);
        assert!(evicted_now(&a1) && !evicted_now(&a2) && !evicted_now(&b1));
        // Authenticated connections do not count against their source.
        a2.handshake_done();
        a2.authenticate();
        let (_a4, made) = adm.admit_at(Some(A), later).unwrap();
        assert!(made.evicted.is_empty());
    }

    #[test]
    fn one_eviction_can_serve_several_budgets() {
        // Per-source and connection budgets both full: the per-source victim
        // frees the connection slot too, so only one connection goes.
        let adm = table(2, 100, 2);
        let t0 = Instant::now();
        let (a1, _) = adm.admit_at(Some(A), t0).unwrap();
        let (a2, _) = adm.admit_at(Some(A), t0).unwrap();
        let (_a3, made) = adm.admit_at(Some(A), t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(made.evicted, vec![Budget::PendingPerSource]);
        assert!(evicted_now(&a1) && !evicted_now(&a2));
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let adm = table(1, 100, 100);
        let t0 = Instant::now();
        let (a, _) = adm.admit_at(Some(A), t0).unwrap();
        assert!(adm.admit_at(Some(B), t0).is_err());
        assert_eq!(adm.counts(), (1, 1, 0));
        assert!(!evicted_now(&a));
        drop(a);
        assert_eq!(adm.counts(), (0, 0, 0));
    }

    /// Behind a balancer every connection comes from its address: the
    /// per-source budget waits for the PROXY header's client, then holds
    /// that client to it as it holds a direct one.
    #[test]
    fn a_balancers_connections_count_per_client_once_named() {
        let adm = table(100, 100, 2);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(2);
        let (a1, _) = adm.admit_at(None, t0).unwrap();
        let (a2, _) = adm.admit_at(None, t0).unwrap();
        let (b1, _) = adm.admit_at(None, t0).unwrap();
        assert_eq!(
            adm.counts(),
            (3, 3, 0),
            "unnamed ones count everywhere but per source"
        );
        assert!(a1.set_source_at(A, t0).unwrap().evicted.is_empty());
        assert!(a2.set_source_at(A, t0).unwrap().evicted.is_empty());
        assert!(b1.set_source_at(B, t0).unwrap().evicted.is_empty());
        let (a3, _) = adm.admit_at(None, t0).unwrap();
        assert_eq!(
            a3.set_source_at(A, t0).unwrap_err(),
            Refused(Budget::PendingPerSource),
            "A's two are too young to make room"
        );
        let made = a3.set_source_at(A, later).unwrap();
        assert_eq!(made.evicted, vec![Budget::PendingPerSource]);
        assert!(evicted_now(&a1) && !evicted_now(&a2) && !evicted_now(&b1));
        assert!(
            a3.set_source_at(B, later).unwrap().evicted.is_empty(),
            "named once"
        );
        drop((a2, a3, b1));
        assert_eq!(adm.counts(), (0, 0, 0));
        assert!(adm.table().pending_by_source.is_empty());
    }
}
