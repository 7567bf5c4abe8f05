//! A connection's deadline kept by one timer ([`Timer`]), re-armed only
//! when it fires early: a request moves the deadline later without
//! touching the runtime's timer wheel.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// A connection's deadline, kept by one timer that is re-armed only when
/// it fires before the deadline: moving the deadline later (each request
/// does) costs no timer operation, and an idle connection costs one per
/// timeout.
pub(super) struct Timer {
    /// The deadline.
    at: Instant,
    /// Fires at or before `at`.
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    /// A timer for deadline `at`.
    pub(super) fn new(at: Instant) -> Self {
        Timer {
            at,
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Move the deadline to `at`.
    pub(super) fn set(&mut self, at: Instant) {
        self.at = at;
        if self.sleep.deadline() > at {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Wait until the deadline passes.
    pub(super) async fn expired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            let at = self.at;
            self.sleep.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_holds_past_the_timer_it_was_armed_with() {
        let start = Instant::now();
        let mut timer = Timer::new(start + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(5)).await;
        // Later: the runtime's timer still fires at 10 s, the deadline does
        // not pass until 15 s.
        timer.set(start + Duration::from_secs(15));
        timer.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        // Earlier than the one armed: re-armed at once.
        timer.set(Instant::now() + Duration::from_secs(60));
        timer.set(Instant::now() + Duration::from_secs(2));
        timer.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(17));
    }
}
