//! Durable execution: a rollout that survives the agent.
//!
//! A policy is deterministic given the results of its imports, so those
//! results are what is kept (as Golem keeps a worker's oplog and Temporal a
//! workflow's history). [`Durable`] is the host the agent's policies call:
//! it hands each call to the [`Session`] and logs it in the store (the
//! function, a digest of its arguments, the result) before the guest sees
//! the result. An effect (start, stop, set-weights) and a wait (sleep,
//! wait-ready) is logged once before it happens, as an intent, and again
//! with its result; reads are logged in batches, written before the next
//! intent, so the log on disk is always a prefix of what the policy did.
//!
//! A restarted agent resumes each rollout that was running: a fresh
//! instance of the same component (pinned by digest) gets the logged
//! results back, call by call, each checked against the log's function and
//! argument digest (another call is a [`Halt::Diverged`], which fails the
//! rollout and restores the old revision), until the log ends; then the
//! rollout goes on live. An effect the agent died during is reconciled with
//! the fleet as it is (an instance is never started twice), a wait resumes
//! with the time it had left, and the front door gets the last weights the
//! policy set.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Session;
use crate::model::{
    Command, EffectError, Instance, InstanceId, Level, Probe, Progress, RevisionId, RevisionStats,
    RolloutInfo,
};
use crate::runtime::{Call, Halt, PolicyHost, hex_digest};
use crate::store::{CallRecord, Store};

/// Reads logged in memory before they are written anyway.
const UNWRITTEN_MAX: usize = 1_024;

/// The pseudo-call that opens every log: the instances running when the
/// rollout started, so a start in flight at a crash can tell its own
/// instances from those.
const OPENING: &str = "host.fleet";

/// The host of a rollout on the agent: a [`Session`] whose every call is
/// logged, and replayed after a restart.
pub struct Durable {
    session: Session,
    log: CallLog,
}

/// What a logged call comes back as while replaying.
enum Replayed<R> {
    /// Its result, as the policy saw it before.
    Done(R),
    /// The agent died during it: the intent's position and rollout time.
    /// It is always the log's last record.
    InFlight(u64, u64),
    /// The log has ended: the call runs live.
    Live,
}

/// The log of one rollout's calls, and where replay is in it.
struct CallLog {
    store: Arc<Store>,
    rollout: i64,
    /// Logged calls not yet replayed.
    replay: VecDeque<CallRecord>,
    /// The next call's position.
    next_seq: u64,
    /// Records not yet written.
    unwritten: Vec<CallRecord>,
    /// Instances the log accounts for: running at the start, or returned
    /// by a start.
    known: HashSet<InstanceId>,
    /// The weights the policy last set while replaying, set again on the
    /// front door when the rollout goes live.
    weights: Option<Vec<(RevisionId, u32)>>,
    /// A divergence seen by a call that cannot halt (log, report), raised
    /// at the next one.
    diverged: Option<String>,
    /// Replaying a resumed rollout, until the first call after the log.
    replaying: bool,
    /// The rollout time of the last call logged or replayed: what the
    /// policy's WASI clocks show.
    seen_ms: u64,
    /// Unix milliseconds at the rollout's start, as stored.
    wall_origin_ms: u64,
}

impl Durable {
    /// A new rollout `rollout` of `session`, logged in `store`; it logs the
    /// fleet it starts from.
    pub async fn start(mut session: Session, store: Arc<Store>, rollout: i64) -> Call<Self> {
        let fleet = session.list().await?;
        let ids: Vec<InstanceId> = fleet.into_iter().map(|i| i.id).collect();
        let mut log = CallLog::new(store, rollout, Vec::new());
        let at = session.now_ms();
        log.record(OPENING, String::new(), at, &ids);
        log.known = ids.into_iter().collect();
        Ok(Durable { session, log })
    }

    /// A rollout resumed after the agent restarted: `session` (on a clock
    /// that goes on from the rollout's start, see [`Session::resuming`])
    /// replays `calls`, then goes on.
    pub fn resume(
        session: Session,
        store: Arc<Store>,
        rollout: i64,
        calls: Vec<CallRecord>,
    ) -> Self {
        let mut log = CallLog::new(store, rollout, calls);
        log.replaying = true;
        if let Some(opening) = log.replay.front().filter(|r| r.func == OPENING) {
            let ids: Vec<InstanceId> = opening
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_default();
            log.known = ids.into_iter().collect();
            log.next_seq = opening.seq + 1;
            log.replay.pop_front();
        }
        Durable { session, log }
    }

    /// How many of `calls` a resumed policy replays: all but the log's
    /// opening record of the fleet.
    pub fn replayed_calls(calls: &[CallRecord]) -> usize {
        calls.iter().filter(|c| c.func != OPENING).count()
    }

    /// The session, once the rollout is over; what is left of the log is
    /// written.
    pub fn into_session(mut self) -> Session {
        if let Err(why) = self.log.write() {
            self.session
                .note(format!("could not write the last calls: {why}"));
        }
        self.session
    }

    /// The log has ended: the rollout goes on live. The front door gets the
    /// weights the policy set before the restart.
    async fn went_live(&mut self) -> Call<()> {
        if let Some(weights) = self.log.weights.take() {
            let set = self.session.set_weights(&weights).await?;
            if let Err(e) = set {
                self.session
                    .note(format!("could not set the weights again: {e}"));
            }
        }
        self.session
            .note("replayed every recorded call: the rollout goes on live");
        Ok(())
    }

    /// The logged result of the call `func(args)` if replaying, or what
    /// `live` returns, logged.
    async fn read<'s, A, R, F>(
        &'s mut self,
        func: &'static str,
        args: &A,
        live: impl FnOnce(&'s mut Session) -> F + Send,
    ) -> Call<R>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + Send,
        F: Future<Output = Call<R>> + Send + 's,
    {
        let digest = digest(func, args);
        if let Replayed::Done(r) = self.replayed(func, &digest).await? {
            return Ok(r);
        }
        let at = self.session.now_ms();
        let result = live(&mut self.session).await?;
        self.log.record(func, digest, at, &result);
        Ok(result)
    }

    /// The next logged call if replaying, checked to be `func` with the
    /// arguments of `digest`.
    async fn replayed<R: DeserializeOwned>(
        &mut self,
        func: &str,
        digest: &str,
    ) -> Call<Replayed<R>> {
        if let Some(why) = self.log.diverged.take() {
            return Err(Halt::Diverged(why));
        }
        let Some(record) = self.log.take_next() else {
            if std::mem::take(&mut self.log.replaying) {
                self.went_live().await?;
            }
            return Ok(Replayed::Live);
        };
        if record.func != func || record.digest != digest {
            return Err(Halt::Diverged(format!(
                "call {}: {func} where the log has {}{}",
                record.seq,
                record.func,
                if record.func == func {
                    " with other arguments"
                } else {
                    ""
                }
            )));
        }
        match &record.result {
            None => {
                // The rollout goes live from this call on.
                self.log.replaying = false;
                self.went_live().await?;
                Ok(Replayed::InFlight(record.seq, record.at_ms))
            }
            Some(json) => serde_json::from_str(json).map(Replayed::Done).map_err(|e| {
                Halt::Diverged(format!("call {}: an unreadable result: {e}", record.seq))
            }),
        }
    }

    /// Log the intent of `func` before it happens, and write the log.
    fn intent(&mut self, func: &'static str, digest: &str) -> Call<u64> {
        let seq = self.log.next_seq;
        self.log.next_seq += 1;
        self.log.unwritten.push(CallRecord {
            seq,
            func: func.to_string(),
            digest: digest.to_string(),
            at_ms: self.session.now_ms(),
            result: None,
        });
        self.log.write().map_err(Halt::Unrecorded)?;
        Ok(seq)
    }

    /// Log the result of the call at `seq`, whose intent was logged.
    fn completed<R: Serialize>(
        &mut self,
        seq: u64,
        func: &'static str,
        digest: String,
        result: &R,
    ) {
        let at = self.session.now_ms();
        self.log.push(seq, func, digest, at, result);
    }

    /// Instances of `revision` in the fleet the log does not account for:
    /// those a start in flight at the crash had made.
    async fn unaccounted(&mut self, revision: &str) -> Call<Vec<Instance>> {
        let fleet = self.session.list().await?;
        Ok(fleet
            .into_iter()
            .filter(|i| i.revision == revision && !self.log.known.contains(&i.id))
            .collect())
    }

    /// Start `count` of `revision`, of which `made` already run.
    async fn start_rest(
        &mut self,
        revision: &str,
        count: u32,
        mut made: Vec<Instance>,
    ) -> Call<Result<Vec<Instance>, EffectError>> {
        made.truncate(count as usize);
        let rest = count - made.len() as u32;
        if rest > 0 {
            match self.session.start(revision, rest).await? {
                Ok(more) => made.extend(more),
                Err(e) if made.is_empty() => return Ok(Err(e)),
                Err(e) => self.session.note(format!(
                    "after the restart, {} of {count} instance(s) of {revision} ran; starting the rest: {e}",
                    made.len()
                )),
            }
        }
        Ok(Ok(made))
    }
}

impl CallLog {
    fn new(store: Arc<Store>, rollout: i64, calls: Vec<CallRecord>) -> Self {
        let wall_origin_ms = store.rollout(rollout).map_or(0, |r| r.started_ms);
        CallLog {
            seen_ms: 0,
            wall_origin_ms,
            store,
            rollout,
            next_seq: 0,
            replay: calls.into(),
            unwritten: Vec::new(),
            known: HashSet::new(),
            weights: None,
            diverged: None,
            replaying: false,
        }
    }

    /// Log a read's result (written with the next intent, or when many).
    fn record<R: Serialize + ?Sized>(
        &mut self,
        func: &'static str,
        digest: String,
        at_ms: u64,
        result: &R,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.push(seq, func, digest, at_ms, result);
        if self.unwritten.len() >= UNWRITTEN_MAX {
            // A read lost with a failed write is only read again.
            let _ = self.write();
        }
    }

    /// The next logged call, replayed: the policy sees its time.
    fn take_next(&mut self) -> Option<CallRecord> {
        let record = self.replay.pop_front()?;
        self.next_seq = record.seq + 1;
        self.seen_ms = record.at_ms;
        Some(record)
    }

    fn push<R: Serialize + ?Sized>(
        &mut self,
        seq: u64,
        func: &'static str,
        digest: String,
        at_ms: u64,
        result: &R,
    ) {
        self.seen_ms = at_ms;
        self.unwritten.push(CallRecord {
            seq,
            func: func.to_string(),
            digest,
            at_ms,
            result: Some(serde_json::to_string(result).unwrap_or_else(|_| "null".into())),
        });
    }

    /// Write what is logged but not written.
    fn write(&mut self) -> Result<(), String> {
        let records = std::mem::take(&mut self.unwritten);
        self.store
            .write_calls(self.rollout, &records)
            .map_err(|e| e.to_string())
    }
}

/// The digest of a call's arguments.
fn digest<A: Serialize + ?Sized>(func: &str, args: &A) -> String {
    let json = serde_json::to_string(args).unwrap_or_default();
    let mut text = String::with_capacity(func.len() + 1 + json.len());
    text.push_str(func);
    text.push('\0');
    text.push_str(&json);
    hex_digest(text.as_bytes())[..32].to_string()
}

impl AsMut<Session> for Durable {
    fn as_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl PolicyHost for Durable {
    fn info(&self) -> &RolloutInfo {
        self.session.info()
    }

    fn wall_origin_ms(&self) -> u64 {
        self.log.wall_origin_ms
    }

    fn seen_ms(&self) -> u64 {
        self.log.seen_ms
    }

    fn last_step(&self) -> String {
        self.session.last_step()
    }

    async fn list(&mut self) -> Call<Vec<Instance>> {
        self.read("fleet.list", &(), |s| Box::pin(s.list())).await
    }

    async fn start(
        &mut self,
        revision: &str,
        count: u32,
    ) -> Call<Result<Vec<Instance>, EffectError>> {
        const FUNC: &str = "fleet.start";
        let digest = digest(FUNC, &(revision, count));
        let result = match self.replayed(FUNC, &digest).await? {
            Replayed::Done(r) => r,
            Replayed::InFlight(seq, _) => {
                let made = self.unaccounted(revision).await?;
                let r = self.start_rest(revision, count, made).await?;
                self.completed(seq, FUNC, digest, &r);
                r
            }
            Replayed::Live => {
                let seq = self.intent(FUNC, &digest)?;
                let r = self.session.start(revision, count).await?;
                self.completed(seq, FUNC, digest, &r);
                r
            }
        };
        if let Ok(started) = &result {
            self.log.known.extend(started.iter().map(|i| i.id.clone()));
        }
        Ok(result)
    }

    async fn stop(&mut self, ids: &[InstanceId]) -> Call<Result<(), EffectError>> {
        const FUNC: &str = "fleet.stop";
        let digest = digest(FUNC, ids);
        match self.replayed(FUNC, &digest).await? {
            Replayed::Done(r) => Ok(r),
            Replayed::InFlight(seq, _) => {
                // Stop what of it still runs.
                let fleet = self.session.list().await?;
                let running: Vec<InstanceId> = ids
                    .iter()
                    .filter(|id| fleet.iter().any(|i| &i.id == *id))
                    .cloned()
                    .collect();
                let r = self.session.stop(&running).await?;
                self.completed(seq, FUNC, digest, &r);
                Ok(r)
            }
            Replayed::Live => {
                let seq = self.intent(FUNC, &digest)?;
                let r = self.session.stop(ids).await?;
                self.completed(seq, FUNC, digest, &r);
                Ok(r)
            }
        }
    }

    async fn logs(&mut self, id: &str, max_lines: u32) -> Call<Result<Vec<String>, EffectError>> {
        self.read("fleet.logs", &(id, max_lines), |s| {
            Box::pin(s.logs(id, max_lines))
        })
        .await
    }

    async fn probe(&mut self, id: &str) -> Call<Probe> {
        self.read("health.probe", id, |s| Box::pin(s.probe(id)))
            .await
    }

    async fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Call<Vec<Probe>> {
        const FUNC: &str = "health.wait-ready";
        let digest = digest(FUNC, &(ids, timeout_ms));
        let (seq, timeout) = match self.replayed(FUNC, &digest).await? {
            Replayed::Done(r) => return Ok(r),
            Replayed::InFlight(seq, at) => {
                let left = (at + timeout_ms).saturating_sub(self.session.now_ms());
                (seq, left)
            }
            Replayed::Live => (self.intent(FUNC, &digest)?, timeout_ms),
        };
        let r = self.session.wait_ready(ids, timeout).await?;
        self.completed(seq, FUNC, digest, &r);
        Ok(r)
    }

    async fn set_weights(
        &mut self,
        weights: &[(RevisionId, u32)],
    ) -> Call<Result<(), EffectError>> {
        const FUNC: &str = "traffic.set-weights";
        let digest = digest(FUNC, weights);
        match self.replayed(FUNC, &digest).await? {
            Replayed::Done(r) => {
                if matches!(r, Ok(())) {
                    self.log.weights = Some(weights.to_vec());
                }
                Ok(r)
            }
            replayed => {
                let seq = match replayed {
                    Replayed::InFlight(seq, _) => seq,
                    _ => self.intent(FUNC, &digest)?,
                };
                let r = self.session.set_weights(weights).await?;
                self.completed(seq, FUNC, digest, &r);
                Ok(r)
            }
        }
    }

    async fn stats(&mut self, revision: &str, window_ms: u64) -> Call<RevisionStats> {
        self.read("traffic.stats", &(revision, window_ms), |s| {
            Box::pin(s.stats(revision, window_ms))
        })
        .await
    }

    fn now_ms(&mut self) -> u64 {
        const FUNC: &str = "clock.now-ms";
        let digest = digest(FUNC, &());
        match self.log.replay.front() {
            Some(r) if r.func == FUNC => {
                let r = self.log.take_next().expect("a front record");
                // Going live happens at the next call that can wait.
                r.result
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or(r.at_ms)
            }
            Some(r) => {
                self.log.diverged = Some(format!(
                    "call {}: {FUNC} where the log has {}",
                    r.seq, r.func
                ));
                self.session.now_ms()
            }
            None => {
                let now = self.session.now_ms();
                self.log.record(FUNC, digest, now, &now);
                now
            }
        }
    }

    async fn sleep(&mut self, ms: u64) -> Call<()> {
        const FUNC: &str = "clock.sleep";
        let digest = digest(FUNC, &ms);
        let (seq, left) = match self.replayed::<()>(FUNC, &digest).await? {
            Replayed::Done(()) => return Ok(()),
            Replayed::InFlight(seq, at) => (seq, (at + ms).saturating_sub(self.session.now_ms())),
            Replayed::Live => (self.intent(FUNC, &digest)?, ms),
        };
        self.session.sleep(left).await?;
        self.completed(seq, FUNC, digest, &());
        Ok(())
    }

    async fn checkpoint(&mut self, label: &str) -> Call<Command> {
        self.read("control.checkpoint", label, |s| {
            Box::pin(s.checkpoint(label))
        })
        .await
    }

    fn log(&mut self, level: Level, message: &str) {
        self.sync_call(
            "control.log",
            &(level, message),
            |s| s.log(level, message),
            |_| {},
        );
    }

    fn report(&mut self, progress: Progress) {
        let replay = progress.clone();
        self.sync_call(
            "control.report",
            &progress,
            |s| s.report(progress.clone()),
            |s| s.replayed_progress(replay),
        );
    }
}

impl Durable {
    /// A call that returns nothing and cannot halt (log, report): `live`
    /// when live, `replayed` when replaying; a divergence is raised at the
    /// next call.
    fn sync_call<A: Serialize + ?Sized>(
        &mut self,
        func: &'static str,
        args: &A,
        live: impl FnOnce(&mut Session),
        replayed: impl FnOnce(&mut Session),
    ) {
        let digest = digest(func, args);
        match self.log.replay.front() {
            Some(r) if r.func == func && r.digest == digest => {
                self.log.take_next();
                replayed(&mut self.session);
            }
            Some(r) => {
                let why = format!("call {}: {func} where the log has {}", r.seq, r.func);
                self.log.diverged.get_or_insert(why);
            }
            None => {
                live(&mut self.session);
                let at = self.session.now_ms();
                self.log.record(func, digest, at, &());
            }
        }
    }
}

#[cfg(test)]
mod tests;
