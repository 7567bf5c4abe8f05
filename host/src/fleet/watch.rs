//! The health watch: a monitor task that notices exits, rotates logs and
//! runs due probes, and the judgement of a probe's result (ready,
//! unhealthy, still starting), also for a probe a policy asks for.

use std::sync::Weak;
use std::time::{Duration, Instant};

use super::Fleet;
use super::logs;
use super::probe::{Check, Outcome};
use super::table::Table;
use crate::backend::BackendError;
use crate::health::LogScanner;
use crate::model::{InstanceId, InstanceState, Probe, Verdict};
use crate::store::unix_ms;

/// How often the monitor looks at the fleet (exits, due probes).
const TICK: Duration = Duration::from_millis(2);
/// How often the monitor checks log sizes.
const ROTATE_EVERY_MS: u64 = 1_000;

/// How often the monitor checks that the front door processes run.
const DOORS_EVERY: Duration = Duration::from_millis(250);

/// The monitor of a fleet: runs until the fleet is dropped.
pub(super) async fn monitor(fleet: Weak<Fleet>) {
    let mut doors_checked = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        fleet.tick().await;
        if doors_checked.elapsed() >= DOORS_EVERY {
            doors_checked = Instant::now();
            for door in fleet.doors() {
                let _ = tokio::task::spawn_blocking(move || door.ensure()).await;
            }
        }
    }
}

impl Fleet {
    /// Run an instance's health checks now.
    pub async fn probe(&self, id: &str) -> Result<Probe, BackendError> {
        let started = Instant::now();
        let (check, waiting) = {
            let mut inner = self.lock();
            let p = inner.get(id)?;
            let waiting = unix_ms() < p.row.started_ms + p.launch.health.readiness_delay;
            ((!waiting).then(|| p.check()), waiting)
        };
        if let Some(check) = check {
            let outcome = check.run().await;
            if apply(&mut self.lock(), outcome) {
                self.on_change();
            }
        }
        let mut inner = self.lock();
        let p = inner.get(id)?;
        let verdict = match (waiting, p.verdict()) {
            (true, Verdict::Unknown(_)) => Verdict::Unknown("readiness delay".into()),
            (_, v) => v,
        };
        Ok(Probe {
            instance: id.to_string(),
            verdict,
            latency_us: started.elapsed().as_micros() as u64,
        })
    }

    /// One pass of the monitor: notice exits, rotate logs, run due probes.
    async fn tick(&self) {
        let now = unix_ms();
        let mut due = Vec::new();
        let mut changed = false;
        {
            let mut inner = self.lock();
            let ids: Vec<InstanceId> = inner.instances.keys().cloned().collect();
            for id in ids {
                let Some(p) = inner.instances.get_mut(&id) else {
                    continue;
                };
                if matches!(p.state, InstanceState::Failed | InstanceState::Draining) {
                    continue;
                }
                if let Some(status) = p.run.exited() {
                    let last = logs::tail(&self.log_path(&id), 1).unwrap_or_default();
                    let why = match last.first() {
                        Some(line) => format!("exited ({status}); last log line: {line}"),
                        None => format!("exited ({status})"),
                    };
                    changed |= inner.set(&id, InstanceState::Failed, Some(why));
                    continue;
                }
                if now >= p.next_rotate_check {
                    p.next_rotate_check = now + ROTATE_EVERY_MS;
                    logs::rotate_if_large(p, &self.log_path(&id));
                }
                if now >= p.probes.next {
                    let starting = p.state == InstanceState::Starting;
                    p.probes.next = now + p.probes.gap(starting, &p.launch.health);
                    due.push(p.check());
                }
            }
        }
        if !due.is_empty() {
            changed |= self.run_probes(due).await;
        }
        if changed {
            self.on_change();
        }
    }

    /// Probe instances concurrently; true if any changed state.
    async fn run_probes(&self, due: Vec<Check>) -> bool {
        let mut changed = false;
        let mut probes = tokio::task::JoinSet::new();
        for check in due {
            probes.spawn(check.run());
        }
        while let Some(Ok(outcome)) = probes.join_next().await {
            changed |= apply(&mut self.lock(), outcome);
        }
        changed
    }
}

/// Apply a probe's result to its instance, unless a newer probe's already
/// was; true if the instance's state changed (or this was the first probe
/// of an adopted instance). A line matching the
/// instance's `log-pattern` fails the probe whatever it found.
pub(super) fn apply(table: &mut Table, outcome: Outcome) -> bool {
    let Outcome { id, seq, result } = outcome;
    let id = id.as_str();
    let Some(p) = table.instances.get_mut(id) else {
        return false;
    };
    if !p.probes.accept(seq) {
        return false;
    }
    // The first probe of an adopted instance tells the front door, even if
    // its state stays.
    let first = std::mem::take(&mut p.unprobed);
    let logged = p.scanner.as_mut().and_then(LogScanner::scan);
    let state = p.state;
    let result = match logged {
        Some(line) => Err(format!("logged {:?}", shorten(&line, 300))),
        None => result,
    };
    let changed = match (state, result) {
        (InstanceState::Starting | InstanceState::Unhealthy, Ok(())) => {
            table.set(id, InstanceState::Ready, None)
        }
        (InstanceState::Ready, Err(why)) => table.set(id, InstanceState::Unhealthy, Some(why)),
        (InstanceState::Starting, Err(why)) if logged_failure(&why) => {
            table.set(id, InstanceState::Unhealthy, Some(why))
        }
        (InstanceState::Starting | InstanceState::Unhealthy, Err(why))
            if !p.was_ready && p.past_start_period() =>
        {
            let period = p.launch.health.start_period.unwrap_or_default();
            let why = format!("never ready, still failing after start-period ({period} ms): {why}");
            table.set(id, InstanceState::Unhealthy, Some(why))
        }
        (InstanceState::Starting | InstanceState::Unhealthy, Err(why)) => {
            p.reason = Some(why);
            false
        }
        _ => false,
    };
    changed || first
}

/// At most `max` characters of `line` (a matching log line can be long).
fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// Whether a failing probe's reason is a matching log line.
fn logged_failure(why: &str) -> bool {
    why.starts_with("logged ")
}
