//! Per-revision traffic metrics: requests, 5xx answers, connection errors
//! and a latency histogram, over a sliding window of one-second buckets.
//!
//! Recording is lock-free (atomics only), so the proxy's hot path never
//! waits on a reader, and sharded: each proxy worker thread records into
//! its own shard ([`record_into`]), so two cores never write the same cache
//! line on the request path; a read sums the shards. A bucket is reset by
//! the first request of its new second; a read racing that reset may miss
//! a few requests, which a sliding-window analysis tolerates.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Seconds the window keeps.
const SECONDS: usize = 120;
/// Sub-buckets per power of two of microseconds (precision about 9%).
const SUB: usize = 8;
/// Latency buckets: powers of two up to about 2^31 us (35 minutes).
const BUCKETS: usize = 32 * SUB;
/// Shards per revision; worker `i` records into shard `i % SHARDS`.
const SHARDS: usize = 4;

thread_local! {
    /// The shard this thread records into.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Make this thread record into shard `worker % SHARDS` (each proxy
/// worker thread calls it with its index once).
pub fn record_into(worker: usize) {
    SHARD.with(|s| s.set(worker % SHARDS));
}

/// One second of traffic.
struct Second {
    /// Which second (since the metrics' epoch) these counts belong to.
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Second {
    fn new() -> Self {
        Second {
            second: AtomicU64::new(u64::MAX),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// This bucket, made current for `second` (reset if it held an older one).
    fn at(&self, second: u64) -> &Self {
        let held = self.second.load(Relaxed);
        if held != second
            && self
                .second
                .compare_exchange(held, second, Relaxed, Relaxed)
                .is_ok()
        {
            self.requests.store(0, Relaxed);
            self.errors.store(0, Relaxed);
            self.connect_errors.store(0, Relaxed);
            self.latency.iter().for_each(|b| b.store(0, Relaxed));
        }
        self
    }
}

/// The latency bucket of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (power - 3)) as usize) & (SUB - 1);
    ((power - 2) * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound, in microseconds, of latency bucket `i`.
fn bucket_top(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let power = i / SUB + 2;
    let sub = (i % SUB) as u64;
    ((SUB as u64 + sub + 1) << (power - 3)) - 1
}

/// Totals since the proxy started, for `/metrics` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests answered by an instance.
    pub requests: u64,
    /// Of which with a 5xx status.
    pub errors: u64,
    /// Attempts that could not reach an instance.
    pub connect_errors: u64,
}

/// A summary of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered.
    pub requests: u64,
    /// 5xx answers plus requests no instance answered.
    pub errors: u64,
    /// Connection errors (included in `errors` when not retried).
    pub connect_errors: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
}

/// One shard of a revision's traffic: what some of the worker threads
/// recorded. Aligned so that two shards' totals never share a cache line.
#[repr(align(128))]
struct Shard {
    seconds: Vec<Second>,
    total_requests: AtomicU64,
    total_errors: AtomicU64,
    total_connect_errors: AtomicU64,
}

/// The traffic of one revision.
pub struct RevisionMetrics {
    epoch: Instant,
    shards: Box<[Shard]>,
}

impl Default for RevisionMetrics {
    fn default() -> Self {
        let shard = || Shard {
            seconds: (0..SECONDS).map(|_| Second::new()).collect(),
            total_requests: AtomicU64::new(0),
            total_errors: AtomicU64::new(0),
            total_connect_errors: AtomicU64::new(0),
        };
        RevisionMetrics {
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }
}

impl RevisionMetrics {
    /// This thread's shard, and its bucket for the current second.
    fn now(&self) -> (&Shard, &Second) {
        let shard = &self.shards[SHARD.with(Cell::get)];
        let second = self.epoch.elapsed().as_secs();
        (shard, shard.seconds[second as usize % SECONDS].at(second))
    }

    /// An instance answered with `status` after `latency`.
    pub fn record(&self, status: u16, latency: Duration) {
        let (shard, s) = self.now();
        s.requests.fetch_add(1, Relaxed);
        shard.total_requests.fetch_add(1, Relaxed);
        if status >= 500 {
            s.errors.fetch_add(1, Relaxed);
            shard.total_errors.fetch_add(1, Relaxed);
        }
        s.latency[bucket(latency.as_micros() as u64)].fetch_add(1, Relaxed);
    }

    /// An instance could not be reached (`failed`: and the client got an error).
    pub fn connect_error(&self, failed: bool) {
        let (shard, s) = self.now();
        s.connect_errors.fetch_add(1, Relaxed);
        shard.total_connect_errors.fetch_add(1, Relaxed);
        if failed {
            s.errors.fetch_add(1, Relaxed);
            shard.total_errors.fetch_add(1, Relaxed);
        }
    }

    /// Counters since the start.
    pub fn totals(&self) -> Totals {
        let sum =
            |f: fn(&Shard) -> &AtomicU64| self.shards.iter().map(|s| f(s).load(Relaxed)).sum();
        Totals {
            requests: sum(|s| &s.total_requests),
            errors: sum(|s| &s.total_errors),
            connect_errors: sum(|s| &s.total_connect_errors),
        }
    }

    /// At least the last `window` (in whole seconds, up to two minutes).
    pub fn summary(&self, window: Duration) -> Summary {
        let now = self.epoch.elapsed().as_secs();
        // The current second is partial: one more bucket so the window
        // covers at least `window` (at most one second more).
        let span = (window.as_millis().div_ceil(1000) as u64 + 1).min(SECONDS as u64);
        let mut merged = [0u64; BUCKETS];
        let mut summary = Summary::default();
        let seconds = now.saturating_sub(span - 1)..=now;
        for (shard, second) in self
            .shards
            .iter()
            .flat_map(|sh| seconds.clone().map(move |s| (sh, s)))
        {
            let s = &shard.seconds[second as usize % SECONDS];
            if s.second.load(Relaxed) != second {
                continue;
            }
            summary.requests += s.requests.load(Relaxed);
            summary.errors += s.errors.load(Relaxed);
            summary.connect_errors += s.connect_errors.load(Relaxed);
            for (m, b) in merged.iter_mut().zip(&s.latency) {
                *m += b.load(Relaxed);
            }
        }
        let quantile = |q: f64| {
            let count: u64 = merged.iter().sum();
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in merged.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_top(i);
                }
            }
            0
        };
        summary.p50_us = quantile(0.50);
        summary.p90_us = quantile(0.90);
        summary.p99_us = quantile(0.99);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_few_percent() {
        for us in [0, 1, 7, 8, 9, 100, 1_000, 12_345, 999_999, 60_000_000] {
            let top = bucket_top(bucket(us));
            assert!(top >= us, "{us} -> {top}");
            assert!(top as f64 <= us as f64 * 1.13 + 1.0, "{us} -> {top}");
        }
        assert!((1..BUCKETS).all(|i| bucket_top(i) > bucket_top(i - 1)));
    }

    #[test]
    fn a_window_counts_requests_errors_and_quantiles() {
        let m = RevisionMetrics::default();
        for i in 0..100u64 {
            let status = if i < 20 { 503 } else { 200 };
            m.record(status, Duration::from_micros(1_000 + i * 10));
        }
        m.connect_error(true);
        let s = m.summary(Duration::from_secs(10));
        assert_eq!((s.requests, s.errors, s.connect_errors), (100, 21, 1));
        assert!((1_450..=1_600).contains(&s.p50_us), "{s:?}");
        assert!((1_950..=2_150).contains(&s.p99_us), "{s:?}");
        assert_eq!(m.totals().requests, 100);
    }

    #[test]
    fn what_worker_threads_record_in_their_shards_is_read_whole() {
        let m = std::sync::Arc::new(RevisionMetrics::default());
        let workers: Vec<_> = (0..SHARDS + 1)
            .map(|worker| {
                let m = m.clone();
                std::thread::spawn(move || {
                    record_into(worker);
                    for _ in 0..10 {
                        m.record(200, Duration::from_micros(100 * (worker as u64 + 1)));
                    }
                    m.record(502, Duration::from_micros(50));
                    m.connect_error(false);
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        let n = SHARDS as u64 + 1;
        let s = m.summary(Duration::from_secs(10));
        assert_eq!((s.requests, s.errors, s.connect_errors), (11 * n, n, n));
        // Quantiles over every shard's latencies: the slowest worker's.
        assert!(s.p99_us >= 100 * n, "{s:?}");
        assert_eq!(
            m.totals(),
            Totals {
                requests: 11 * n,
                errors: n,
                connect_errors: n
            }
        );
    }
}
