//! Injected faults: a deterministic error rate and timed failures.

use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::log;

/// Interval between repeated simulated-failure log lines.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Fails a fixed share of requests, spread evenly over a global counter.
#[derive(Debug)]
pub struct ErrorRate {
    rate: f64,
    requests: AtomicU64,
}

impl ErrorRate {
    /// An error rate of `rate` (between 0 and 1).
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            requests: AtomicU64::new(0),
        }
    }

    /// Counts one request and says whether it must fail.
    pub fn next_fails(&self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        fails(number, self.rate)
    }
}

/// Whether request `number` (counting from 1) fails: it does when it makes
/// `floor(number * rate)` grow, so any `n` requests hold `floor(n * rate)`
/// failures, evenly spread.
fn fails(number: u64, rate: f64) -> bool {
    (number as f64 * rate).floor() > ((number - 1) as f64 * rate).floor()
}

/// Starts the timers of `ERROR_AFTER_MS` and `EXIT_AFTER_MS`, counted from
/// `started`.
pub fn spawn_timers(config: &Config, started: Instant) {
    if let Some(delay) = config.error_after {
        spawn_at(started + delay, log_errors_forever);
    }
    if let Some(delay) = config.exit_after {
        spawn_at(started + delay, exit_now);
    }
}

/// Runs `action` on a new thread at instant `at`.
fn spawn_at(at: Instant, action: fn()) {
    thread::spawn(move || {
        thread::sleep(at.saturating_duration_since(Instant::now()));
        action();
    });
}

/// Logs the simulated failure now and every second after.
fn log_errors_forever() {
    loop {
        log::error("simulated failure: database unreachable (ERROR_AFTER_MS)");
        thread::sleep(ERROR_LOG_INTERVAL);
    }
}

/// Logs and exits with status 1.
fn exit_now() {
    log::error("exiting (EXIT_AFTER_MS)");
    process::exit(1);
}

/// Makes SIGTERM do nothing (`IGNORE_SIGTERM`), as in an app that never
/// reacts to it: only SIGKILL stops it, so a stop waits out its grace
/// period.
pub fn ignore_sigterm() {
    // std has no signal API; libc is linked anyway.
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGTERM: i32 = 15;
    const SIG_IGN: usize = 1;
    // SAFETY: signal(2) with SIG_IGN installs no handler and touches no
    // memory of ours.
    unsafe {
        signal(SIGTERM, SIG_IGN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(rate: f64, requests: u64) -> Vec<u64> {
        let errors = ErrorRate::new(rate);
        (1..=requests).filter(|_| errors.next_fails()).collect()
    }

    #[test]
    fn half_fails_every_second_request() {
        assert_eq!(failures(0.5, 10), [2, 4, 6, 8, 10]);
    }

    #[test]
    fn fifth_fails_every_fifth_request() {
        assert_eq!(failures(0.2, 20), [5, 10, 15, 20]);
    }

    #[test]
    fn extremes_fail_none_or_all() {
        assert!(failures(0.0, 100).is_empty());
        assert_eq!(failures(1.0, 100).len(), 100);
    }

    #[test]
    fn share_holds_over_any_prefix() {
        for rate in [0.01, 0.1, 0.25, 1.0 / 3.0, 0.7, 0.99] {
            for n in [1, 7, 10, 100, 1000] {
                let expected = (n as f64 * rate).floor() as usize;
                assert_eq!(
                    failures(rate, n).len(),
                    expected,
                    "rate {rate}, {n} requests"
                );
            }
        }
    }
}
