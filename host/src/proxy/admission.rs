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
//! `..._refused_total`). An evicted connection whose request arrives just
//! then is closed all the same, as a keep-alive connection a server
//! closes just as a request arrives (clients retry those); a connection
//! counts until it has gone, so a door holds at most as many more than
//! its limit as it has evictions under way.
//!
//! A request costs two atomic stores here (busy, then waiting again); the
//! registry of connections is locked only to admit one, and scanned only
//! when a limit is reached. A connection sending a body or taking an
//! answer is busy: its timeouts, not eviction, bound it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::Notify;

/// Descriptors never given to client connections.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The process's limit on open files.
fn open_file_limit() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => Ok(limit),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Raise the soft limit on open files to the hard limit (as nginx's
/// `worker_rlimit_nofile` and systemd services do): the limit before and
/// after.
pub fn raise_descriptor_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = open_file_limit()?;
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

/// The client connections all front doors of a process may hold together,
/// and every one of them, to find the one to evict when they are spent.
pub struct Budget {
    /// How many.
    limit: usize,
    /// Held now.
    held: AtomicUsize,
    /// Every connection admitted (gone ones are dropped as it grows).
    slots: Mutex<Vec<Weak<Slot>>>,
}

impl Budget {
    /// A budget of `limit` connections.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            held: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// This process's: half of its descriptors beyond the reserve (a
    /// client connection may hold one to an instance too), as the limit
    /// stood when the first front door opened.
    pub fn process() -> &'static Budget {
        static BUDGET: OnceLock<Budget> = OnceLock::new();
        BUDGET.get_or_init(|| {
            let soft = open_file_limit().map_or(1024, |l| l.rlim_cur);
            let spare = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
            Budget::new(usize::try_from(spare).unwrap_or(usize::MAX).max(1))
        })
    }

    /// How many it allows.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Tell the connection that has waited longest for a request (of door
    /// `door` only, if given) to go; false if every one serves a request.
    fn evict_one(&self, slots: &[Weak<Slot>], door: Option<usize>) -> bool {
        let oldest = slots
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| door.is_none_or(|d| s.door == d) && !s.evicting.load(Ordering::Relaxed))
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
        slot.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// One front door's client connections.
pub struct Admission {
    /// Tells its connections from other doors' in the budget.
    id: usize,
    max: usize,
    budget: &'static Budget,
    held: AtomicUsize,
    refused: AtomicU64,
    /// Its connections closed to make room, by whichever door.
    evicted: Arc<AtomicU64>,
}

/// One admitted connection's state.
struct Slot {
    /// Its door's id.
    door: usize,
    /// Since when (ms after [`epoch`], plus one) it waits for a request;
    /// 0 while it serves one.
    waiting_since: AtomicU64,
    /// Chosen to make room.
    evicting: AtomicBool,
    evict: Notify,
    /// Its door's count of evictions.
    evicted: Arc<AtomicU64>,
}

/// The instant `waiting_since` counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now, as a `waiting_since` value.
fn now() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// What a door's counters say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Connections held now (those told to go until they have).
    pub held: usize,
    /// Refused with a 503 since the door opened.
    pub refused: u64,
    /// Closed to make room for another since the door opened.
    pub evicted: u64,
}

impl Admission {
    /// A door of at most `max` connections within `budget`.
    pub fn new(max: usize, budget: &'static Budget) -> Arc<Admission> {
        static DOORS: AtomicUsize = AtomicUsize::new(0);
        Arc::new(Admission {
            id: DOORS.fetch_add(1, Ordering::Relaxed),
            max,
            budget,
            held: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            evicted: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Admit a new connection. Past the door's own limit, the one of its
    /// connections that has waited longest for a request is told to go;
    /// past the budget, the one of any door. `None`: none to evict (it is
    /// counted as refused).
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let budget = self.budget;
        let door_full = self.held.load(Ordering::Relaxed) >= self.max;
        let budget_full = budget.held.load(Ordering::Relaxed) >= budget.limit;
        let mut slots = budget.slots.lock().unwrap_or_else(|p| p.into_inner());
        if door_full || budget_full {
            let scope = door_full.then_some(self.id);
            if !budget.evict_one(&slots, scope) {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        let held = budget.held.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = Arc::new(Slot {
            door: self.id,
            waiting_since: AtomicU64::new(now()),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
            evicted: self.evicted.clone(),
        });
        if slots.len() >= 2 * held + 16 {
            slots.retain(|s| s.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        Some(Ticket {
            admission: self.clone(),
            slot,
        })
    }

    /// Its counters.
    pub fn counts(&self) -> Counts {
        Counts {
            held: self.held.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
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
        self.slot.waiting_since.store(now(), Ordering::Relaxed);
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
    fn doors_share_the_process_budget_and_its_evictions() {
        let shared = budget(2);
        let (a, b) = (Admission::new(10, shared), Admission::new(10, shared));
        let held_a = a.admit().expect("room");
        let held_b = b.admit().expect("room");
        held_a.busy();
        held_b.busy();
        assert!(a.admit().is_none(), "the budget is spent");
        // Another door's idle connection gives way too.
        held_b.waiting();
        let _newcomer = a.admit().expect("room made on door b");
        assert_eq!((a.counts().evicted, b.counts().evicted), (0, 1));
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
