//! Which client connections a front door holds. At most its
//! `max-connections`, and together with every other front door of the
//! agent at most what the process's file descriptors allow, less a
//! reserve that health probes, instance log files, the store and the
//! control API keep whatever clients do ([`Budget`]).
//!
//! Past either limit a new connection takes the place of the one that has
//! waited longest for a request: idle between requests, or still sending
//! its head (a slowloris). nginx reuses its idle keep-alive connections
//! the same way. A request in flight is never cut off; when every
//! connection has one, the newcomer gets a `503` and is closed. Both are
//! counted (`rollout_front_door_connections_evicted_total`,
//! `..._refused_total`).
//!
//! A request costs two atomic stores here (busy, then waiting again); the
//! registry of connections is locked only to admit one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::Notify;

/// Descriptors never given to client connections.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raise the soft limit on open files to the hard limit (as nginx's
/// `worker_rlimit_nofile` and systemd services do): the limit before and
/// after.
pub fn raise_descriptor_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// The client connections all front doors of a process may hold together.
pub struct Budget {
    /// How many.
    limit: usize,
    /// Held now.
    held: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` connections.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// This process's: half of its descriptors beyond the reserve (a
    /// client connection may hold one to an instance too), as the limit
    /// stood when the first front door opened.
    pub fn process() -> &'static Budget {
        static BUDGET: OnceLock<Budget> = OnceLock::new();
        BUDGET.get_or_init(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes the limit into the struct it is given.
            let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
                0 => limit.rlim_cur,
                _ => 1024,
            };
            let spare = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
            Budget::new(usize::try_from(spare).unwrap_or(usize::MAX).max(1))
        })
    }

    /// How many it allows.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One front door's client connections.
pub struct Admission {
    max: usize,
    budget: &'static Budget,
    held: AtomicUsize,
    /// Every connection admitted, to find one to evict (gone ones are
    /// dropped from it as it grows).
    slots: Mutex<Vec<Weak<Slot>>>,
    refused: AtomicU64,
    evicted: AtomicU64,
    epoch: Instant,
}

/// One admitted connection's state.
struct Slot {
    /// Since when (ms after the door's epoch, plus one) it waits for a
    /// request; 0 while it serves one.
    waiting_since: AtomicU64,
    /// Chosen to make room.
    evicting: AtomicBool,
    evict: Notify,
}

/// What a door's counters say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Connections held now.
    pub held: usize,
    /// Refused with a 503 since the door opened.
    pub refused: u64,
    /// Closed to make room for another since the door opened.
    pub evicted: u64,
}

impl Admission {
    /// A door of at most `max` connections within `budget`.
    pub fn new(max: usize, budget: &'static Budget) -> Arc<Admission> {
        Arc::new(Admission {
            max,
            budget,
            held: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Admit a new connection, evicting the one that has waited longest
    /// for a request if there is no room; `None`: no room and none to
    /// evict (it is counted as refused).
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let full = self.held.load(Ordering::Relaxed) >= self.max
            || self.budget.held.load(Ordering::Relaxed) >= self.budget.limit;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if full && !self.evict_one(&slots) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.budget.held.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            waiting_since: AtomicU64::new(self.now()),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        if slots.len() >= 2 * self.held.load(Ordering::Relaxed) + 16 {
            slots.retain(|s| s.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        Some(Ticket {
            admission: self.clone(),
            slot,
        })
    }

    /// Tell the connection that has waited longest for a request to go;
    /// false if every connection serves one.
    fn evict_one(&self, slots: &[Weak<Slot>]) -> bool {
        let oldest = slots
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !s.evicting.load(Ordering::Relaxed))
            .filter_map(|s| {
                let since = s.waiting_since.load(Ordering::Relaxed);
                (since > 0).then_some((since, s))
            })
            .min_by_key(|(since, _)| *since);
        let Some((_, slot)) = oldest else {
            return false;
        };
        slot.evicting.store(true, Ordering::Relaxed);
        slot.evict.notify_one();
        self.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Its counters.
    pub fn counts(&self) -> Counts {
        Counts {
            held: self.held.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Now, as a `waiting_since` value.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// An admitted connection's place, given back when dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    slot: Arc<Slot>,
}

impl Ticket {
    /// It serves a request: not to be evicted.
    pub fn busy(&self) {
        self.slot.waiting_since.store(0, Ordering::Relaxed);
    }

    /// It waits for a request again, from now.
    pub fn waiting(&self) {
        let now = self.admission.now();
        self.slot.waiting_since.store(now, Ordering::Relaxed);
    }

    /// Resolves once it is told to make room for another connection.
    pub async fn evicted(&self) {
        self.slot.evict.notified().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.held.fetch_sub(1, Ordering::Relaxed);
        self.admission.budget.held.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    #[tokio::test]
    async fn past_its_limit_a_door_evicts_the_connection_waiting_longest() {
        let door = Admission::new(2, budget(100));
        let first = door.admit().expect("room");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = door.admit().expect("room");
        let third = door.admit().expect("room made by evicting the first");
        tokio::time::timeout(std::time::Duration::from_secs(5), first.evicted())
            .await
            .expect("the first is told to go");
        assert_eq!(door.counts().evicted, 1);
        drop(first);
        assert_eq!(door.counts().held, 2);
        drop((second, third));
        assert_eq!(door.counts().held, 0);
    }

    #[test]
    fn a_connection_serving_a_request_is_never_evicted() {
        let door = Admission::new(1, budget(100));
        let serving = door.admit().expect("room");
        serving.busy();
        assert!(door.admit().is_none());
        assert_eq!(door.counts().refused, 1);
        serving.waiting();
        assert!(door.admit().is_some());
    }

    #[test]
    fn doors_share_the_process_budget() {
        let shared = budget(2);
        let (a, b) = (Admission::new(10, shared), Admission::new(10, shared));
        let held_a = a.admit().expect("room");
        let held_b = b.admit().expect("room");
        held_a.busy();
        held_b.busy();
        assert!(a.admit().is_none(), "the budget is spent");
        drop(held_b);
        assert!(a.admit().is_some());
    }

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        let (_, now) = raise_descriptor_limit().expect("getrlimit");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into the struct it is given.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!((now, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
