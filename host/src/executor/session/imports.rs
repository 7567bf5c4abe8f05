//! The policy's imports: each checks in with the session's pacing, then
//! does what it was asked within the guardrails, or says why not.

use super::{Session, effect_error};
use crate::clock::Clock;
use crate::journal::Kind;
use crate::model::{
    Command, EffectError, Instance, InstanceId, Level, Probe, Progress, RevisionId, RevisionStats,
    RolloutInfo,
};
use crate::runtime::{Call, PolicyHost};

impl PolicyHost for Session {
    fn info(&self) -> &RolloutInfo {
        &self.info
    }

    fn wall_origin_ms(&self) -> u64 {
        match &self.clock {
            Clock::Virtual(_) => 0,
            Clock::Real(_) => crate::store::unix_ms().saturating_sub(self.clock.now_ms()),
        }
    }

    fn seen_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn last_step(&self) -> String {
        match &self.step {
            Some(p) if p.steps > 0 => format!("step {}/{} ({})", p.step, p.steps, p.message),
            Some(p) => format!("step {} ({})", p.step, p.message),
            None => "the start (no step reported yet)".to_string(),
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.clock.now_ms()
    }

    /// `fleet.list`.
    async fn list(&mut self) -> Call<Vec<Instance>> {
        self.enter().await?;
        Ok(self.fleet().await.unwrap_or_default())
    }

    /// `fleet.start`, checked against abort and max surge.
    async fn start(
        &mut self,
        revision: &str,
        count: u32,
    ) -> Call<Result<Vec<Instance>, EffectError>> {
        self.enter().await?;
        let what = format!("start {revision} x{count}");
        let known = revision == self.info.to_revision
            || self.info.from_revision.as_deref() == Some(revision);
        if !known {
            let why = format!("revision {revision} is not part of this rollout");
            return self.refuse(&what, EffectError::Invalid(why));
        }
        if revision == self.info.to_revision
            && let Some(why) = self.abort_reason()
        {
            return self.refuse(&what, EffectError::Aborted(why));
        }
        match self.start_checked(revision, count).await {
            Ok(started) => Ok(Ok(started)),
            Err(e) => self.refuse(&what, e),
        }
    }

    /// `fleet.stop`, checked against min available.
    async fn stop(&mut self, ids: &[InstanceId]) -> Call<Result<(), EffectError>> {
        self.enter().await?;
        match self.stop_checked(ids).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => self.refuse(&format!("stop {}", ids.join(" ")), e),
        }
    }

    /// `fleet.logs`.
    async fn logs(&mut self, id: &str, max_lines: u32) -> Call<Result<Vec<String>, EffectError>> {
        self.enter().await?;
        Ok(self.backend.logs(id, max_lines).await.map_err(effect_error))
    }

    /// `health.probe`.
    async fn probe(&mut self, id: &str) -> Call<Probe> {
        self.enter().await?;
        Ok(self.probe_now(id).await)
    }

    /// `health.wait-ready`: probe until each instance is ready or failed, or
    /// the timeout passes. On the virtual clock it jumps from one fleet
    /// change to the next.
    async fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Call<Vec<Probe>> {
        self.enter().await?;
        self.await_ready(ids, timeout_ms).await
    }

    /// `traffic.set-weights`; after an abort the new revision gets no traffic.
    async fn set_weights(
        &mut self,
        weights: &[(RevisionId, u32)],
    ) -> Call<Result<(), EffectError>> {
        self.enter().await?;
        let text: Vec<_> = weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
        let what = format!("weights {}", text.join(" "));
        let to = &self.info.to_revision;
        let grows_new = weights.iter().any(|(r, w)| r == to && *w > 0);
        if grows_new && let Some(why) = self.abort_reason() {
            return self.refuse(&what, EffectError::Aborted(why));
        }
        match self.backend.set_weights(weights).await {
            Ok(()) => {
                self.journal.push(self.clock.now_ms(), Kind::Effect, what);
                Ok(Ok(()))
            }
            Err(e) => self.refuse(&what, effect_error(e)),
        }
    }

    /// `traffic.stats`.
    async fn stats(&mut self, revision: &str, window_ms: u64) -> Call<RevisionStats> {
        self.enter().await?;
        Ok(self.backend.stats(revision, window_ms).await)
    }

    /// `clock.sleep`.
    /// An abort ends the sleep at once (and an aborted rollout does not
    /// sleep), so the policy's next checkpoint sees it without waiting out
    /// a long hold.
    async fn sleep(&mut self, ms: u64) -> Call<()> {
        self.enter().await?;
        if self.operator.aborted {
            return Ok(());
        }
        let at = self.clock.now_ms().saturating_add(ms);
        if self.clock.is_virtual() {
            let wake = self
                .operator
                .next_abort_ms()
                .map_or(at, |a| a.clamp(self.clock.now_ms(), at));
            self.sleep_until(wake).await?;
            self.apply_operator();
            return Ok(());
        }
        loop {
            let poke = self.operator.poke();
            tokio::select! {
                slept = self.sleep_until(at) => return slept,
                _ = poke.notified() => {
                    self.apply_operator();
                    if self.operator.aborted {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// `control.checkpoint`: waits while paused, then passes on an abort
    /// (operator or progress deadline) or a promote.
    async fn checkpoint(&mut self, label: &str) -> Call<Command> {
        self.enter().await?;
        let command = match self.abort_reason() {
            Some(why) => Command::Abort(why),
            None if std::mem::take(&mut self.operator.promote) => Command::Promote,
            None => Command::Proceed,
        };
        let said = match &command {
            Command::Proceed => "proceed".to_string(),
            Command::Promote => "promote".to_string(),
            Command::Abort(why) => format!("abort ({why})"),
        };
        self.journal.push(
            self.clock.now_ms(),
            Kind::Operator,
            format!("checkpoint {label:?}: {said}"),
        );
        Ok(command)
    }

    /// `control.log`.
    fn log(&mut self, level: Level, message: &str) {
        let level = level.name();
        self.journal.push(
            self.clock.now_ms(),
            Kind::Log,
            format!("[{level}] {message}"),
        );
    }

    /// `control.report`: a new step counts as progress.
    fn report(&mut self, progress: Progress) {
        if self.step.as_ref().is_none_or(|p| p.step < progress.step) {
            self.last_progress_ms = self.clock.now_ms();
        }
        let text = match progress.steps {
            0 => format!("step {}: {}", progress.step, progress.message),
            n => format!("step {}/{n}: {}", progress.step, progress.message),
        };
        self.journal.push(self.clock.now_ms(), Kind::Progress, text);
        self.step = Some(progress);
    }
}
