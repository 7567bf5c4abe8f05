//! Pacing: what every host call does first. It journals what the fleet
//! did on its own, applies due operator commands (waiting while paused),
//! checks the rollout and progress deadlines, and stops a policy that loops
//! without waiting.

use super::{BUSY_CALLS, POLL_MS, Session};
use crate::clock::Clock;
use crate::journal::Kind;
use crate::model::InstanceState;
use crate::runtime::{Call, Halt};

impl Session {
    /// Journal what the fleet did on its own; a new instance becoming ready
    /// is progress.
    pub(super) fn observe(&mut self) {
        for o in self.backend.take_observations() {
            if o.state == InstanceState::Ready
                && o.revision == self.info.to_revision
                && self.seen_ready.insert(o.instance.clone())
            {
                self.last_progress_ms = self.last_progress_ms.max(o.at_ms);
            }
            let text = format!("{} ({}) is {}", o.instance, o.revision, o.state.name());
            self.journal.push(o.at_ms, Kind::Fleet, text);
        }
    }

    /// Apply operator commands due now.
    pub(super) fn apply_operator(&mut self) {
        for (at, action) in self.operator.apply_due(self.clock.now_ms()) {
            self.journal
                .push(at, Kind::Operator, format!("operator: {}", action.name()));
        }
    }

    /// What every host call does first: observe, obey the operator, check
    /// the deadlines.
    pub(super) async fn enter(&mut self) -> Call<()> {
        let without = match self.clock {
            Clock::Virtual(_) => {
                let now = self.clock.now_ms();
                if self.busy.0 != now {
                    self.busy = (now, 0);
                }
                "without letting virtual time pass"
            }
            Clock::Real(_) => "without waiting",
        };
        self.check_stopping()?;
        self.busy.1 += 1;
        if self.busy.1 > BUSY_CALLS {
            return Err(Halt::Busy(BUSY_CALLS, without));
        }
        self.observe();
        self.apply_operator();
        let paused_at = self.clock.now_ms();
        while self.operator.paused {
            let release = match (&self.clock, self.operator.next_release_ms()) {
                (_, Some(at)) => at,
                (Clock::Virtual(_), None) => return Err(Halt::PausedForever),
                (Clock::Real(_), None) => self.clock.now_ms() + POLL_MS,
            };
            self.sleep_until(release).await?;
            self.apply_operator();
        }
        // Time spent paused is the operator's, not a lack of progress.
        let paused_for = self.clock.now_ms() - paused_at;
        if paused_for > 0 && !self.stalled {
            self.last_progress_ms += paused_for;
        }
        if self.clock.now_ms() > self.guardrails.deadline_ms {
            return Err(Halt::Deadline(self.guardrails.deadline_ms));
        }
        self.check_stall();
        Ok(())
    }

    /// When the progress deadline passes, if nothing progresses before.
    pub(super) fn stall_at_ms(&self) -> Option<u64> {
        let at = self.last_progress_ms + self.guardrails.progress_deadline_ms + 1;
        (!self.stalled).then_some(at)
    }

    /// Mark the rollout stalled once the progress deadline has passed.
    pub(super) fn check_stall(&mut self) -> bool {
        let now = self.clock.now_ms();
        if self.stall_at_ms().is_some_and(|at| now >= at) {
            self.stalled = true;
            self.journal.push(
                now,
                Kind::Host,
                format!(
                    "progress deadline of {} ms exceeded: nothing became ready since {} ms; aborting",
                    self.guardrails.progress_deadline_ms, self.last_progress_ms
                ),
            );
        }
        self.stalled
    }

    /// Sleep, but never past the rollout deadline.
    pub(super) async fn sleep_until(&mut self, at_ms: u64) -> Call<()> {
        let deadline = match self.restoring {
            true => u64::MAX - 1,
            false => self.guardrails.deadline_ms,
        };
        if at_ms > self.clock.now_ms() {
            self.waited();
        }
        let wake = at_ms.min(deadline + 1);
        match self.stopping.clone() {
            Some(mut stopping) if !self.clock.is_virtual() => {
                tokio::select! {
                    _ = self.clock.sleep_until(wake) => {}
                    _ = stopping.wait_for(|stop| *stop) => {}
                }
            }
            _ => self.clock.sleep_until(wake).await,
        }
        self.observe();
        self.check_stopping()?;
        if at_ms > deadline {
            return Err(Halt::Deadline(deadline));
        }
        Ok(())
    }

    /// Halt once the agent is stopping (a safe point: no effect in flight).
    fn check_stopping(&mut self) -> Call<()> {
        if self.stopping.as_ref().is_some_and(|s| *s.borrow()) {
            self.interrupted = true;
            return Err(Halt::Stopping);
        }
        Ok(())
    }

    /// The policy waits: on the real clock, its count of calls that did not
    /// starts again.
    pub(super) fn waited(&mut self) {
        if !self.clock.is_virtual() {
            self.busy.1 = 0;
        }
    }

    /// Why the new revision may not grow, if it may not.
    pub(super) fn abort_reason(&self) -> Option<String> {
        if self.operator.aborted {
            Some("aborted by the operator".to_string())
        } else if self.stalled {
            Some(format!(
                "progress deadline of {} ms exceeded",
                self.guardrails.progress_deadline_ms
            ))
        } else {
            None
        }
    }
}
