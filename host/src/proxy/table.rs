//! The routing table: which instances take traffic, and how requests are
//! spread over revisions and instances.
//!
//! A table is immutable; the proxy swaps in a new one when the fleet or the
//! weights change, so a request reads one consistent snapshot without a lock.
//!
//! - Without weights, every ready instance takes an equal share (as a
//!   Kubernetes Service would during a rolling update).
//! - With weights, request `n` falls at a point of a low-discrepancy
//!   sequence over the total weight, so the shares match the weights within
//!   a fraction of a percent after a few hundred requests.
//! - A sticky key (header or cookie) is hashed to a point instead; newer
//!   revisions are placed first, so a client placed on the canary stays on
//!   it while its weight grows.
//! - Inside a revision: least in-flight requests, ties broken round-robin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::metrics::RevisionMetrics;
use crate::model::{InstanceId, RevisionId};

/// One instance as the proxy sees it.
pub struct Upstream {
    /// Instance id.
    pub id: InstanceId,
    /// Revision it runs.
    pub revision: RevisionId,
    /// The revision as a response header value.
    pub revision_header: hyper::header::HeaderValue,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests it is serving now.
    pub inflight: AtomicU64,
    /// Being drained: takes no new request.
    pub draining: AtomicBool,
}

/// Instances of one revision and its share.
pub struct Group {
    /// Its weight (all groups weigh 1 per instance without weights).
    pub weight: u32,
    /// Its ready instances.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Its traffic.
    pub metrics: Arc<RevisionMetrics>,
}

/// A snapshot of the routing.
#[derive(Default)]
pub struct Table {
    /// Groups, newest revision first.
    pub groups: Vec<Group>,
    total: u32,
}

thread_local! {
    /// This thread's position in the sequence of group choices.
    static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// This thread's round-robin position among a group's instances.
    static RR: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Take the next value of a thread's counter.
fn next(counter: &'static std::thread::LocalKey<std::cell::Cell<u64>>) -> u64 {
    counter.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    })
}

/// Newest first: `r10` after `r9`, other names by text.
fn newest_first(a: &RevisionId, b: &RevisionId) -> std::cmp::Ordering {
    let number = |r: &str| r.strip_prefix('r').and_then(|n| n.parse::<u64>().ok());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        _ => b.cmp(a),
    }
}

impl Table {
    /// Route over `upstreams` by `weights` (none: by instance count).
    pub fn new(
        upstreams: &[Arc<Upstream>],
        weights: Option<&[(RevisionId, u32)]>,
        metrics: &HashMap<RevisionId, Arc<RevisionMetrics>>,
    ) -> Self {
        let mut by_revision: HashMap<&RevisionId, Vec<Arc<Upstream>>> = HashMap::new();
        for u in upstreams {
            by_revision.entry(&u.revision).or_default().push(u.clone());
        }
        // Revisions the weights do not name weigh 0: a last resort only.
        let mut revisions: Vec<RevisionId> = by_revision.keys().map(|r| (*r).clone()).collect();
        revisions.extend(
            weights
                .iter()
                .flat_map(|w| w.iter().map(|(r, _)| r.clone())),
        );
        revisions.sort_by(newest_first);
        revisions.dedup();
        let groups: Vec<Group> = revisions
            .into_iter()
            .map(|revision| {
                let upstreams = by_revision.get(&revision).cloned().unwrap_or_default();
                let weight = match weights {
                    Some(w) => w
                        .iter()
                        .filter(|(r, _)| *r == revision)
                        .map(|(_, w)| *w)
                        .sum(),
                    None => upstreams.len() as u32,
                };
                let metrics = metrics.get(&revision).cloned().unwrap_or_default();
                Group {
                    weight,
                    upstreams,
                    metrics,
                }
            })
            .collect();
        let total = groups.iter().map(|g| g.weight).sum();
        Table { groups, total }
    }

    /// True if instance `id` takes traffic in this table.
    pub fn routes_to(&self, id: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.upstreams.iter().any(|u| u.id == id))
    }

    /// The group at `point` in `0..total` of the cumulative weights.
    fn group_at(&self, point: u64) -> Option<&Group> {
        let mut acc = 0u64;
        for g in &self.groups {
            acc += u64::from(g.weight);
            if point < acc {
                return Some(g);
            }
        }
        None
    }

    /// The group the next request goes to: by `sticky` key when given.
    /// When the chosen group has no instance, any weighted group with one;
    /// when none has, any group with one (serving beats failing).
    pub fn pick_group(&self, sticky: Option<&[u8]>) -> Option<&Group> {
        let chosen = match (self.total, sticky) {
            (0, _) => None,
            (total, Some(key)) => self.group_at(hash(key) % u64::from(total)),
            (total, None) => {
                // Each worker thread walks its own sequence: no shared
                // counter on the request path, and each sequence alone is
                // low-discrepancy.
                let n = next(&NEXT);
                // Weyl sequence: n * golden ratio, mod 1, scaled to the total.
                let frac = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
                self.group_at(((frac as u128 * u128::from(total)) >> 53) as u64)
            }
        };
        chosen
            .filter(|g| !g.upstreams.is_empty())
            .or_else(|| {
                self.groups
                    .iter()
                    .find(|g| g.weight > 0 && !g.upstreams.is_empty())
            })
            .or_else(|| self.groups.iter().find(|g| !g.upstreams.is_empty()))
    }

    /// The instance of `group` with the fewest requests in flight, other than
    /// those in `exclude`.
    pub fn pick_upstream<'a>(
        &self,
        group: &'a Group,
        exclude: &[InstanceId],
    ) -> Option<&'a Arc<Upstream>> {
        let n = group.upstreams.len();
        let start = next(&RR) as usize;
        (0..n)
            .map(|i| &group.upstreams[(start + i) % n])
            .filter(|u| !u.draining.load(Ordering::SeqCst) && !exclude.contains(&u.id))
            .min_by_key(|u| u.inflight.load(Ordering::Relaxed))
    }
}

/// FNV-1a, enough to spread client keys.
fn hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(id: &str, revision: &str) -> Arc<Upstream> {
        Arc::new(Upstream {
            id: id.into(),
            revision: revision.into(),
            revision_header: hyper::header::HeaderValue::from_static("r"),
            addr: "127.0.0.1:1".parse().unwrap(),
            inflight: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        })
    }

    /// The revision of a group [`Table::pick_group`] chose (it has an
    /// instance).
    fn revision(group: &Group) -> &str {
        &group.upstreams[0].revision
    }

    fn shares(table: &Table, n: usize) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            let g = table.pick_group(None).unwrap();
            *seen.entry(revision(g).to_string()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn weights_split_requests_closely() {
        let ups = [
            upstream("a", "r1"),
            upstream("b", "r1"),
            upstream("c", "r2"),
        ];
        let weights = [("r1".to_string(), 95), ("r2".to_string(), 5)];
        let table = Table::new(&ups, Some(&weights), &HashMap::new());
        let seen = shares(&table, 1_000);
        assert!((45..=55).contains(&seen["r2"]), "{seen:?}");
        // Without weights: by instance count.
        let table = Table::new(&ups, None, &HashMap::new());
        let seen = shares(&table, 3_000);
        assert!((950..=1_050).contains(&seen["r2"]), "{seen:?}");
    }

    #[test]
    fn a_group_without_instances_falls_back_to_one_with() {
        let ups = [upstream("a", "r1")];
        let weights = [("r1".to_string(), 0), ("r2".to_string(), 100)];
        let table = Table::new(&ups, Some(&weights), &HashMap::new());
        assert_eq!(revision(table.pick_group(None).unwrap()), "r1");
        assert!(
            Table::new(&[], None, &HashMap::new())
                .pick_group(None)
                .is_none()
        );
    }

    #[test]
    fn sticky_clients_stay_on_the_canary_as_it_grows() {
        let ups = [upstream("a", "r1"), upstream("b", "r2")];
        let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
        let mut on_canary = vec![false; keys.len()];
        for w in [5, 25, 50, 100] {
            let weights = [("r1".to_string(), 100 - w), ("r2".to_string(), w)];
            let table = Table::new(&ups, Some(&weights), &HashMap::new());
            let mut count = 0;
            for (i, k) in keys.iter().enumerate() {
                let canary = revision(table.pick_group(Some(k.as_bytes())).unwrap()) == "r2";
                assert!(canary || !on_canary[i], "{k} left the canary at {w}%");
                on_canary[i] = canary;
                count += usize::from(canary);
            }
            let share = count * 100 / keys.len();
            assert!(share.abs_diff(w as usize) <= 7, "{share}% at {w}%");
        }
    }

    #[test]
    fn least_in_flight_wins_and_draining_is_skipped() {
        let ups = [upstream("a", "r1"), upstream("b", "r1")];
        ups[0].inflight.store(3, Ordering::Relaxed);
        let table = Table::new(&ups, None, &HashMap::new());
        let g = table.pick_group(None).unwrap();
        assert_eq!(table.pick_upstream(g, &[]).unwrap().id, "b");
        ups[1].draining.store(true, Ordering::SeqCst);
        assert_eq!(table.pick_upstream(g, &[]).unwrap().id, "a");
        assert!(table.pick_upstream(g, &["a".into()]).is_none());
    }
}
