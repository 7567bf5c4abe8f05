//! One rollout in progress: the policy's imports land here.
//!
//! Every call first journals what the fleet did on its own, applies due
//! operator commands (waiting while paused), and checks the deadlines. Every
//! effect is then checked against the guardrails and the operator's abort
//! before the backend sees it; refusals come back to the policy as
//! [`EffectError`] values and are journaled like every effect.

use std::collections::HashSet;

use super::guardrails::{GuardrailSpec, Guardrails};
use super::operator::Operator;
use crate::backend::{Backend, BackendError};
use crate::clock::Clock;
use crate::journal::{Entry, Journal, Kind};
use crate::model::{
    Command, EffectError, Instance, InstanceId, InstanceState, Level, Outcome, Probe, Progress,
    RevisionId, RevisionStats, RolloutInfo, Verdict,
};

/// Poll interval of `wait-ready` on the real clock.
const POLL_MS: u64 = 250;

/// Why the host stopped the policy (it traps; the policy cannot react).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    /// The rollout ran past its deadline.
    #[error("rollout deadline of {0} ms exceeded")]
    Deadline(u64),
    /// Paused with nothing scheduled to resume it (virtual clock only).
    #[error("paused by the operator and never resumed")]
    PausedForever,
    /// Too many host calls without virtual time passing (virtual clock) or
    /// without waiting (real clock): each call gives the guest a fresh CPU
    /// budget, so only this bound stops a loop that never waits before the
    /// deadlines do.
    #[error(
        "made {0} host calls {1}: a busy loop \
         (wait between looks at the fleet with clock.sleep or health.wait-ready)"
    )]
    Busy(u64, &'static str),
}

/// Most host calls a policy may make at one instant of a virtual clock, or
/// between two waits on the real clock.
const BUSY_CALLS: u64 = 1_000_000;

/// The result of a host call that may halt the policy.
pub type Call<T> = Result<T, Halt>;

/// One rollout in progress.
pub struct Session {
    info: RolloutInfo,
    backend: Box<dyn Backend>,
    clock: Clock,
    guardrails: Guardrails,
    operator: Operator,
    journal: Journal,
    last_progress_ms: u64,
    stalled: bool,
    step: Option<Progress>,
    seen_ready: HashSet<InstanceId>,
    /// Restoring after the policy failed: the rollout deadline no longer
    /// cuts waits short (restore has its own bounds).
    restoring: bool,
    /// The virtual instant of the last host call, and the calls made at it
    /// (on the real clock: the calls made since the policy last waited).
    busy: (u64, u64),
}

impl Session {
    /// A rollout of `info` on `backend`, timed by `clock`.
    pub fn new(
        info: RolloutInfo,
        backend: Box<dyn Backend>,
        clock: Clock,
        guardrails: &GuardrailSpec,
        operator: Operator,
    ) -> Self {
        let guardrails = Guardrails::resolve(guardrails, info.replicas);
        let mut journal = Journal::default();
        journal.push(
            clock.now_ms(),
            Kind::Host,
            format!(
                "rollout of {} from {} to {} ({} replicas; guardrails: at most {} instances, at least {} ready)",
                info.service,
                info.from_revision.as_deref().unwrap_or("nothing"),
                info.to_revision,
                info.replicas,
                guardrails.max_instances,
                guardrails.min_ready
            ),
        );
        Session {
            info,
            backend,
            clock,
            guardrails,
            operator,
            journal,
            last_progress_ms: 0,
            stalled: false,
            step: None,
            seen_ready: HashSet::new(),
            restoring: false,
            busy: (0, 0),
        }
    }

    /// Also send every journal entry, from the first, to `sink`.
    pub fn journal_to(mut self, sink: tokio::sync::mpsc::UnboundedSender<Entry>) -> Self {
        let mut journal = Journal::with_sink(sink);
        for e in self.journal.entries() {
            journal.push(e.at_ms, e.kind, e.text.clone());
        }
        self.journal = journal;
        self
    }

    /// What the rollout is asked to do.
    pub fn info(&self) -> &RolloutInfo {
        &self.info
    }

    /// The journal so far.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The rollout's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The journal and the backend, once the rollout is over.
    pub fn into_parts(self) -> (Journal, Box<dyn Backend>) {
        (self.journal, self.backend)
    }

    /// Milliseconds since the rollout started.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The last step the policy reported, for error messages.
    pub fn last_step(&self) -> String {
        match &self.step {
            Some(p) if p.steps > 0 => format!("step {}/{} ({})", p.step, p.steps, p.message),
            Some(p) => format!("step {} ({})", p.step, p.message),
            None => "the start (no step reported yet)".to_string(),
        }
    }

    /// The last step number reported, if any.
    pub fn step_number(&self) -> Option<u32> {
        self.step.as_ref().map(|p| p.step)
    }

    /// Append a host entry to the journal.
    pub fn note(&mut self, text: impl Into<String>) {
        self.journal.push(self.now_ms(), Kind::Host, text);
    }

    /// Journal what the fleet did on its own; a new instance becoming ready
    /// is progress.
    fn observe(&mut self) {
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
    fn apply_operator(&mut self) {
        for (at, action) in self.operator.apply_due(self.now_ms()) {
            self.journal
                .push(at, Kind::Operator, format!("operator: {}", action.name()));
        }
    }

    /// What every host call does first: observe, obey the operator, check
    /// the deadlines.
    async fn enter(&mut self) -> Call<()> {
        let without = match self.clock {
            Clock::Virtual(_) => {
                let now = self.now_ms();
                if self.busy.0 != now {
                    self.busy = (now, 0);
                }
                "without letting virtual time pass"
            }
            Clock::Real(_) => "without waiting",
        };
        self.busy.1 += 1;
        if self.busy.1 > BUSY_CALLS {
            return Err(Halt::Busy(BUSY_CALLS, without));
        }
        self.observe();
        self.apply_operator();
        let paused_at = self.now_ms();
        while self.operator.paused {
            let release = match (&self.clock, self.operator.next_release_ms()) {
                (_, Some(at)) => at,
                (Clock::Virtual(_), None) => return Err(Halt::PausedForever),
                (Clock::Real(_), None) => self.now_ms() + POLL_MS,
            };
            self.sleep_until(release).await?;
            self.apply_operator();
        }
        // Time spent paused is the operator's, not a lack of progress.
        let paused_for = self.now_ms() - paused_at;
        if paused_for > 0 && !self.stalled {
            self.last_progress_ms += paused_for;
        }
        if self.now_ms() > self.guardrails.deadline_ms {
            return Err(Halt::Deadline(self.guardrails.deadline_ms));
        }
        self.check_stall();
        Ok(())
    }

    /// When the progress deadline passes, if nothing progresses before.
    fn stall_at_ms(&self) -> Option<u64> {
        let at = self.last_progress_ms + self.guardrails.progress_deadline_ms + 1;
        (!self.stalled).then_some(at)
    }

    /// Mark the rollout stalled once the progress deadline has passed.
    fn check_stall(&mut self) -> bool {
        let now = self.now_ms();
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
    async fn sleep_until(&mut self, at_ms: u64) -> Call<()> {
        let deadline = match self.restoring {
            true => u64::MAX - 1,
            false => self.guardrails.deadline_ms,
        };
        if at_ms > self.now_ms() {
            self.waited();
        }
        self.clock.sleep_until(at_ms.min(deadline + 1)).await;
        self.observe();
        if at_ms > deadline {
            return Err(Halt::Deadline(deadline));
        }
        Ok(())
    }

    /// The policy waits: on the real clock, its count of calls that did not
    /// starts again.
    fn waited(&mut self) {
        if !self.clock.is_virtual() {
            self.busy.1 = 0;
        }
    }

    /// Why the new revision may not grow, if it may not.
    fn abort_reason(&self) -> Option<String> {
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

    fn refuse<T>(&mut self, what: &str, error: EffectError) -> Call<Result<T, EffectError>> {
        self.journal
            .push(self.now_ms(), Kind::Refused, format!("{what}: {error}"));
        Ok(Err(error))
    }

    async fn fleet(&mut self) -> Result<Vec<Instance>, EffectError> {
        self.backend.list().await.map_err(effect_error)
    }

    // ---- fleet -------------------------------------------------------

    /// `fleet.list`.
    pub async fn list(&mut self) -> Call<Vec<Instance>> {
        self.enter().await?;
        Ok(self.fleet().await.unwrap_or_default())
    }

    /// `fleet.start`, checked against abort and max surge.
    pub async fn start(
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

    /// Start after the surge check; journals success.
    async fn start_checked(
        &mut self,
        revision: &str,
        count: u32,
    ) -> Result<Vec<Instance>, EffectError> {
        let running = self.fleet().await?.len() as u32;
        self.guardrails
            .check_start(running, count)
            .map_err(EffectError::Guardrail)?;
        let started = self
            .backend
            .start(revision, count)
            .await
            .map_err(effect_error)?;
        let ids: Vec<_> = started.iter().map(|i| i.id.as_str()).collect();
        self.journal.push(
            self.now_ms(),
            Kind::Effect,
            format!("start {revision} x{count} -> {}", ids.join(" ")),
        );
        Ok(started)
    }

    /// `fleet.stop`, checked against min available.
    pub async fn stop(&mut self, ids: &[InstanceId]) -> Call<Result<(), EffectError>> {
        self.enter().await?;
        match self.stop_checked(ids).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => self.refuse(&format!("stop {}", ids.join(" ")), e),
        }
    }

    /// Stop after the availability check; journals success.
    async fn stop_checked(&mut self, ids: &[InstanceId]) -> Result<(), EffectError> {
        if ids.is_empty() {
            return Ok(());
        }
        let fleet = self.fleet().await?;
        let stopping: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let running: HashSet<&str> = fleet.iter().map(|i| i.id.as_str()).collect();
        if let Some(missing) = stopping.iter().find(|id| !running.contains(*id)) {
            return Err(EffectError::Invalid(format!(
                "no running instance {missing}"
            )));
        }
        let ready = |i: &&Instance| i.state == InstanceState::Ready;
        let before = fleet.iter().filter(ready).count() as u32;
        let staying = |i: &&Instance| !stopping.contains(i.id.as_str());
        let after = fleet.iter().filter(ready).filter(staying).count() as u32;
        self.guardrails
            .check_stop(before, after)
            .map_err(EffectError::Guardrail)?;
        self.backend.stop(ids).await.map_err(effect_error)?;
        self.journal.push(
            self.now_ms(),
            Kind::Effect,
            format!("stop {}", ids.join(" ")),
        );
        Ok(())
    }

    /// `fleet.logs`.
    pub async fn logs(
        &mut self,
        id: &str,
        max_lines: u32,
    ) -> Call<Result<Vec<String>, EffectError>> {
        self.enter().await?;
        Ok(self.backend.logs(id, max_lines).await.map_err(effect_error))
    }

    // ---- health ------------------------------------------------------

    /// `health.probe`.
    pub async fn probe(&mut self, id: &str) -> Call<Probe> {
        self.enter().await?;
        Ok(self.probe_now(id).await)
    }

    async fn probe_now(&mut self, id: &str) -> Probe {
        self.backend.probe(id).await.unwrap_or_else(|e| Probe {
            instance: id.to_string(),
            verdict: Verdict::Unhealthy(e.to_string()),
            latency_us: 0,
        })
    }

    /// `health.wait-ready`: probe until each instance is ready or failed, or
    /// the timeout passes. On the virtual clock it jumps from one fleet
    /// change to the next.
    pub async fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Call<Vec<Probe>> {
        self.enter().await?;
        self.await_ready(ids, timeout_ms).await
    }

    async fn await_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Call<Vec<Probe>> {
        let started = self.now_ms();
        let until = started.saturating_add(timeout_ms);
        // The progress deadline cuts waits on the new revision short; a
        // policy bringing the old one back waits as long as it asked.
        let fleet = self.fleet().await.unwrap_or_default();
        let waits_on_new = fleet
            .iter()
            .any(|i| i.revision == self.info.to_revision && ids.contains(&i.id));
        let deadline_applies = waits_on_new && !self.restoring;
        loop {
            let mut probes = Vec::with_capacity(ids.len());
            for id in ids {
                probes.push(self.probe_now(id).await);
            }
            let pending = probes
                .iter()
                .any(|p| matches!(p.verdict, Verdict::Unknown(_)));
            let now = self.now_ms();
            let stalled = pending && deadline_applies && self.check_stall();
            if !pending || now >= until || stalled {
                let why = match stalled {
                    true => format!(
                        "{} (not ready after {} ms)",
                        self.abort_reason().unwrap_or_default(),
                        now - started
                    ),
                    false => format!("not ready after {timeout_ms} ms"),
                };
                for p in &mut probes {
                    if let Verdict::Unknown(_) = p.verdict {
                        p.verdict = Verdict::Unknown(why.clone());
                    }
                }
                return Ok(probes);
            }
            let stall = self.stall_at_ms().filter(|_| deadline_applies);
            let wake = stall.map_or(until, |at| until.min(at));
            match (&self.clock, self.backend.changes()) {
                (Clock::Virtual(_), _) => {
                    let next = self.backend.next_change_ms().unwrap_or(until);
                    self.sleep_until(next.clamp(now + 1, wake)).await?;
                }
                // A live backend says when its fleet changed: wake then.
                (Clock::Real(_), Some(changed)) => {
                    self.waited();
                    let wait = std::time::Duration::from_millis(wake.saturating_sub(now).max(1));
                    let _ = tokio::time::timeout(wait, changed.notified()).await;
                    self.sleep_until(self.now_ms()).await?;
                }
                (Clock::Real(_), None) => {
                    self.sleep_until((now + POLL_MS).clamp(now + 1, wake))
                        .await?;
                }
            }
        }
    }

    // ---- traffic -----------------------------------------------------

    /// `traffic.set-weights`; after an abort the new revision gets no traffic.
    pub async fn set_weights(
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
                self.journal.push(self.now_ms(), Kind::Effect, what);
                Ok(Ok(()))
            }
            Err(e) => self.refuse(&what, effect_error(e)),
        }
    }

    /// `traffic.stats`.
    pub async fn stats(&mut self, revision: &str, window_ms: u64) -> Call<RevisionStats> {
        self.enter().await?;
        Ok(self.backend.stats(revision, window_ms).await)
    }

    // ---- clock -------------------------------------------------------

    /// `clock.sleep`.
    /// An abort ends the sleep at once (and an aborted rollout does not
    /// sleep), so the policy's next checkpoint sees it without waiting out
    /// a long hold.
    pub async fn sleep(&mut self, ms: u64) -> Call<()> {
        self.enter().await?;
        if self.operator.aborted {
            return Ok(());
        }
        let at = self.now_ms().saturating_add(ms);
        if self.clock.is_virtual() {
            let wake = self
                .operator
                .next_abort_ms()
                .map_or(at, |a| a.clamp(self.now_ms(), at));
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

    // ---- control -----------------------------------------------------

    /// `control.checkpoint`: waits while paused, then passes on an abort
    /// (operator or progress deadline) or a promote.
    pub async fn checkpoint(&mut self, label: &str) -> Call<Command> {
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
            self.now_ms(),
            Kind::Operator,
            format!("checkpoint {label:?}: {said}"),
        );
        Ok(command)
    }

    /// `control.log`.
    pub fn log(&mut self, level: Level, message: &str) {
        let level = format!("{level:?}").to_lowercase();
        self.journal
            .push(self.now_ms(), Kind::Log, format!("[{level}] {message}"));
    }

    /// `control.report`: a new step counts as progress.
    pub fn report(&mut self, progress: Progress) {
        if self.step.as_ref().is_none_or(|p| p.step < progress.step) {
            self.last_progress_ms = self.now_ms();
        }
        let text = match progress.steps {
            0 => format!("step {}: {}", progress.step, progress.message),
            n => format!("step {}/{n}: {}", progress.step, progress.message),
        };
        self.journal.push(self.now_ms(), Kind::Progress, text);
        self.step = Some(progress);
    }

    // ---- after the policy ---------------------------------------------

    /// The policy has ended: operator commands no longer apply.
    pub fn close_operator(&mut self) {
        self.operator.close();
    }

    /// Check what `policy` (its name, for the message) claims against the
    /// fleet: a `completed` with the new revision short of its replicas is a
    /// failure, and the host restores the old revision.
    pub async fn verify(&mut self, policy: &str, outcome: Outcome) -> Outcome {
        self.observe();
        let Outcome::Completed = outcome else {
            return outcome;
        };
        let to = self.info.to_revision.clone();
        let ready = self.count_ready(&to).await;
        if ready < self.info.replicas {
            let why = format!(
                "policy {policy} reported completed, but only {ready} of {} instances of {to} are ready",
                self.info.replicas
            );
            self.note(why.clone());
            let restored = self.restore().await;
            return Outcome::Failed(format!("{why}; {restored}"));
        }
        outcome
    }

    async fn count_ready(&mut self, revision: &str) -> u32 {
        let fleet = self.fleet().await.unwrap_or_default();
        let ready = |i: &&Instance| i.revision == revision && i.state == InstanceState::Ready;
        fleet.iter().filter(ready).count() as u32
    }

    /// The host's safety net after a policy crashed or broke a limit:
    /// bring the old revision back to `replicas` ready instances within the
    /// guardrails, then stop the new revision. Returns what it did.
    pub async fn restore(&mut self) -> String {
        let to = self.info.to_revision.clone();
        let Some(from) = self.info.from_revision.clone() else {
            return match self.stop_revision(&to).await {
                Ok(n) => format!("stopped {n} instance(s) of {to}"),
                Err(e) => format!("could not stop {to}: {e}"),
            };
        };
        self.restoring = true;
        self.note(format!("restoring {from}"));
        let replicas = self.info.replicas;
        for _ in 0..=2 * replicas + 1 {
            let fleet = self.fleet().await.unwrap_or_default();
            let ready = fleet
                .iter()
                .filter(|i| i.revision == from && i.state == InstanceState::Ready)
                .count() as u32;
            if ready >= replicas {
                return match self.stop_revision(&to).await {
                    Ok(n) => format!(
                        "fleet restored: {ready} instance(s) of {from} ready, {n} of {to} stopped"
                    ),
                    Err(e) => format!("{from} restored, but stopping {to} failed: {e}"),
                };
            }
            // Unready new instances serve nothing; stopping them frees room.
            let unready: Vec<_> = fleet
                .iter()
                .filter(|i| i.revision == to && i.state != InstanceState::Ready)
                .map(|i| i.id.clone())
                .collect();
            let alive = fleet.iter().filter(|i| i.revision == from).count() as u32;
            let room = self
                .guardrails
                .max_instances
                .saturating_sub(fleet.len() as u32 - unready.len() as u32);
            let wanted = replicas.saturating_sub(alive).min(room).max(1);
            let step = async {
                self.stop_checked(&unready).await?;
                if room == 0 {
                    let spare = fleet
                        .iter()
                        .find(|i| i.revision == to)
                        .map(|i| i.id.clone());
                    self.stop_checked(spare.as_slice()).await?;
                }
                let started = self.start_checked(&from, wanted).await?;
                let ids: Vec<_> = started.into_iter().map(|i| i.id).collect();
                Ok::<_, EffectError>(ids)
            };
            match step.await {
                Ok(ids) => {
                    if self.await_ready(&ids, 60_000).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    self.note(format!("restore: {e}"));
                    break;
                }
            }
        }
        format!(
            "could not restore {from} to {replicas} ready instance(s); the fleet needs an operator"
        )
    }

    async fn stop_revision(&mut self, revision: &str) -> Result<usize, EffectError> {
        let ids: Vec<_> = self
            .fleet()
            .await?
            .into_iter()
            .filter(|i| i.revision == revision)
            .map(|i| i.id)
            .collect();
        self.stop_checked(&ids).await?;
        Ok(ids.len())
    }
}

/// How a backend error reaches the policy.
fn effect_error(e: BackendError) -> EffectError {
    match e {
        BackendError::UnknownInstance(_) | BackendError::UnknownRevision(_) => {
            EffectError::Invalid(e.to_string())
        }
        BackendError::Failed(why) => EffectError::Backend(why),
    }
}
