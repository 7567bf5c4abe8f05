//! One table of scripted fleets and operations, with the answers every
//! front of the simulated fleet must give.
//!
//! The host's `sim` backend (driven through the host's session, as `rollout
//! test` drives it) and the SDK's `FakeFleet` (driven through the WIT-typed
//! traits a policy calls) each implement [`Subject`], and their test suites
//! check that [`run`] gives [`Case::expect`] for every case of [`cases`]: if
//! either drifts from the model, or from the other, its suite fails. Ids
//! are written without the host's `<service>-` prefix, states and verdicts
//! by their lowercase names.

use crate::Behaviour;
use crate::fleet::Extremes;

/// One operation on the fleet.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// `fleet.start(revision, count)`.
    Start(&'static str, u32),
    /// `fleet.stop(ids)`.
    Stop(&'static [&'static str]),
    /// `clock.sleep(ms)`.
    Sleep(u64),
    /// `health.wait-ready(ids, timeout-ms)`.
    WaitReady(&'static [&'static str], u64),
    /// `fleet.list()`.
    List,
    /// `health.probe(id)`.
    Probe(&'static str),
    /// `fleet.logs(id, max-lines)`.
    Logs(&'static str, u32),
    /// `traffic.set-weights(weights)`.
    Weights(&'static [(&'static str, u32)]),
    /// `traffic.stats(revision, window-ms)`.
    Stats(&'static str, u64),
}

/// A scripted fleet, what is done to it, and what must come back.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case shows.
    pub name: &'static str,
    /// The rollout is from `from` to `to` (both have a behaviour).
    pub from: &'static str,
    /// The revision rolled out.
    pub to: &'static str,
    /// Ready instances of `from` at time 0.
    pub serving: u32,
    /// Behaviour per revision.
    pub revisions: Vec<(&'static str, Behaviour)>,
    /// The operations, in order.
    pub steps: Vec<Step>,
    /// What [`run`] must write: a line per step, stamped with the virtual
    /// time after it, then the extremes.
    pub expect: &'static [&'static str],
}

/// A front of the simulated fleet, as a policy sees it.
pub trait Subject {
    /// Virtual milliseconds now.
    fn now_ms(&mut self) -> u64;
    /// Start instances: their ids and states.
    fn start(&mut self, revision: &str, count: u32) -> Vec<(String, String)>;
    /// Stop instances.
    fn stop(&mut self, ids: &[String]);
    /// Let virtual time pass.
    fn sleep(&mut self, ms: u64);
    /// Wait until the instances are ready or failed: each one's verdict
    /// (`healthy`, `unhealthy`, `unknown`).
    fn wait_ready(&mut self, ids: &[String], timeout_ms: u64) -> Vec<(String, String)>;
    /// Instances not stopped: id, state and age in ms.
    fn list(&mut self) -> Vec<(String, String, u64)>;
    /// Probe one instance: its verdict and the probe's latency in µs.
    fn probe(&mut self, id: &str) -> (String, u64);
    /// The last log lines of an instance.
    fn logs(&mut self, id: &str, max_lines: u32) -> Vec<String>;
    /// Split traffic by weight.
    fn set_weights(&mut self, weights: &[(String, u32)]);
    /// Traffic of a revision over a window: requests, errors, and the p50
    /// and p99 latencies in µs.
    fn stats(&mut self, revision: &str, window_ms: u64) -> [u64; 4];
    /// Extremes of the fleet so far.
    fn extremes(&mut self) -> Extremes;
}

/// Run `case` on `subject`: what it answered, in the form of
/// [`Case::expect`].
pub fn run(case: &Case, subject: &mut dyn Subject) -> Vec<String> {
    let owned = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let pairs = |pairs: Vec<(String, String)>| {
        let text: Vec<_> = pairs.iter().map(|(a, b)| format!("{a} {b}")).collect();
        text.join(", ")
    };
    let mut lines = Vec::new();
    for step in &case.steps {
        let text = match *step {
            Step::Start(revision, count) => {
                let started = subject.start(revision, count);
                format!("start {revision} x{count}: {}", pairs(started))
            }
            Step::Stop(ids) => {
                subject.stop(&owned(ids));
                format!("stop {}", ids.join(" "))
            }
            Step::Sleep(ms) => {
                subject.sleep(ms);
                format!("sleep {ms}")
            }
            Step::WaitReady(ids, timeout) => {
                let probes = subject.wait_ready(&owned(ids), timeout);
                format!("wait {} {timeout}: {}", ids.join(" "), pairs(probes))
            }
            Step::List => {
                let listed = subject.list();
                let text: Vec<_> = listed
                    .iter()
                    .map(|(id, state, age)| format!("{id} {state} {age}ms"))
                    .collect();
                format!("list: {}", text.join(", "))
            }
            Step::Probe(id) => {
                let (verdict, latency_us) = subject.probe(id);
                format!("probe {id}: {verdict} {latency_us}us")
            }
            Step::Logs(id, max) => {
                let lines = subject.logs(id, max);
                format!("logs {id} {max}: {lines:?}")
            }
            Step::Weights(weights) => {
                let weights: Vec<_> = weights.iter().map(|(r, w)| (r.to_string(), *w)).collect();
                subject.set_weights(&weights);
                let text: Vec<_> = weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
                format!("weights {}", text.join(" "))
            }
            Step::Stats(revision, window) => {
                let [requests, errors, p50, p99] = subject.stats(revision, window);
                format!(
                    "stats {revision} {window}: {requests} requests, {errors} errors, p50 {p50}us, p99 {p99}us"
                )
            }
        };
        lines.push(format!("{} {text}", subject.now_ms()));
    }
    let e = subject.extremes();
    lines.push(format!(
        "extremes: at most {} instances, at least {} ready",
        e.max_instances, e.min_ready
    ));
    lines
}

/// The shared cases.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "an instance becomes ready, then crashes; stops and waits on the clock",
            from: "v1",
            to: "v2",
            serving: 2,
            revisions: vec![
                ("v1", Behaviour::ready_after(1_000)),
                ("v2", Behaviour::ready_after(2_000).failing_after(5_000)),
            ],
            steps: vec![
                Step::Start("v2", 1),
                Step::List,
                Step::Probe("v2-3"),
                Step::WaitReady(&["v2-3"], 10_000),
                Step::Probe("v2-3"),
                Step::Stop(&["v1-1"]),
                Step::Sleep(4_000),
                Step::List,
                Step::Probe("v2-3"),
            ],
            expect: &[
                "0 start v2 x1: v2-3 starting",
                "0 list: v1-1 ready 0ms, v1-2 ready 0ms, v2-3 starting 0ms",
                "0 probe v2-3: unknown 10000us",
                "2000 wait v2-3 10000: v2-3 healthy",
                "2000 probe v2-3: healthy 10000us",
                "2000 stop v1-1",
                "6000 sleep 4000",
                "6000 list: v1-2 ready 6000ms, v2-3 failed 6000ms",
                "6000 probe v2-3: unhealthy 10000us",
                "extremes: at most 3 instances, at least 1 ready",
            ],
        },
        Case {
            name: "the first start crashes when it would be ready; a wait ends at the last to settle",
            from: "v1",
            to: "v2",
            serving: 1,
            revisions: vec![
                ("v1", Behaviour::ready_after(1_000)),
                ("v2", Behaviour::ready_after(1_500).crashing_first(1)),
            ],
            steps: vec![
                Step::Start("v2", 2),
                Step::WaitReady(&["v2-2", "v2-3"], 3_000),
                Step::List,
                Step::Stop(&["v2-2", "v1-1"]),
                Step::Start("v1", 1),
                Step::List,
            ],
            expect: &[
                "0 start v2 x2: v2-2 starting, v2-3 starting",
                "1500 wait v2-2 v2-3 3000: v2-2 unhealthy, v2-3 healthy",
                "1500 list: v1-1 ready 1500ms, v2-2 failed 1500ms, v2-3 ready 1500ms",
                "1500 stop v2-2 v1-1",
                "1500 start v1 x1: v1-4 starting",
                "1500 list: v2-3 ready 1500ms, v1-4 starting 0ms",
                "extremes: at most 3 instances, at least 1 ready",
            ],
        },
        Case {
            name: "a revision that never becomes ready times the wait out",
            from: "v1",
            to: "v2",
            serving: 1,
            revisions: vec![
                ("v1", Behaviour::ready_after(0)),
                ("v2", Behaviour::never_ready().logging(500, "listening?")),
            ],
            steps: vec![
                Step::Start("v2", 1),
                Step::WaitReady(&["v2-2"], 5_000),
                Step::Probe("v2-2"),
                Step::Logs("v2-2", 5),
                Step::List,
            ],
            expect: &[
                "0 start v2 x1: v2-2 starting",
                "5000 wait v2-2 5000: v2-2 unknown",
                "5000 probe v2-2: unknown 10000us",
                "5000 logs v2-2 5: [\"listening?\"]",
                "5000 list: v1-1 ready 5000ms, v2-2 starting 5000ms",
                "extremes: at most 2 instances, at least 1 ready",
            ],
        },
        Case {
            name: "an instance turns unhealthy while running; its log lines appear on time",
            from: "v1",
            to: "v2",
            serving: 1,
            revisions: vec![
                ("v1", Behaviour::ready_after(1_000)),
                (
                    "v2",
                    Behaviour::ready_after(1_000)
                        .unhealthy_after(3_000)
                        .logging(2_000, "warming up")
                        .logging(4_000, "[ERROR] boom")
                        .latency(7),
                ),
            ],
            steps: vec![
                Step::Start("v2", 1),
                Step::WaitReady(&["v2-2"], 10_000),
                Step::Logs("v2-2", 5),
                Step::Sleep(2_500),
                Step::Probe("v2-2"),
                Step::Logs("v2-2", 1),
                Step::List,
            ],
            expect: &[
                "0 start v2 x1: v2-2 starting",
                "1000 wait v2-2 10000: v2-2 healthy",
                "1000 logs v2-2 5: []",
                "3500 sleep 2500",
                "3500 probe v2-2: unhealthy 7000us",
                "3500 logs v2-2 1: [\"warming up\"]",
                "3500 list: v1-1 ready 3500ms, v2-2 unhealthy 3500ms",
                "extremes: at most 2 instances, at least 1 ready",
            ],
        },
        Case {
            name: "traffic splits by ready instances, then by weight; errors begin at their onset",
            from: "v1",
            to: "v2",
            serving: 3,
            revisions: vec![
                ("v1", Behaviour::ready_after(1_000)),
                (
                    "v2",
                    Behaviour::ready_after(1_000)
                        .erroring(0.2)
                        .erroring_after(6_000)
                        .latency(20)
                        .p99_latency(90),
                ),
            ],
            steps: vec![
                Step::Stats("v1", 10_000),
                Step::Start("v2", 1),
                Step::Weights(&[("v1", 75), ("v2", 25)]),
                Step::Stats("v2", 10_000),
                Step::Sleep(1_000),
                Step::Stats("v2", 10_000),
                Step::Sleep(10_000),
                Step::Stats("v2", 10_000),
                Step::Stats("v1", 10_000),
                Step::Sleep(10_000),
                Step::Stats("v2", 10_000),
            ],
            expect: &[
                "0 stats v1 10000: 1000 requests, 0 errors, p50 10000us, p99 20000us",
                "0 start v2 x1: v2-4 starting",
                "0 weights v1=75 v2=25",
                "0 stats v2 10000: 0 requests, 0 errors, p50 20000us, p99 90000us",
                "1000 sleep 1000",
                "1000 stats v2 10000: 250 requests, 0 errors, p50 20000us, p99 90000us",
                "11000 sleep 10000",
                "11000 stats v2 10000: 250 requests, 25 errors, p50 20000us, p99 90000us",
                "11000 stats v1 10000: 750 requests, 0 errors, p50 10000us, p99 20000us",
                "21000 sleep 10000",
                "21000 stats v2 10000: 250 requests, 50 errors, p50 20000us, p99 90000us",
                "extremes: at most 4 instances, at least 3 ready",
            ],
        },
        Case {
            name: "flaky starts are drawn from the seeded generator, in start order",
            from: "v1",
            to: "v2",
            serving: 1,
            revisions: vec![
                ("v1", Behaviour::ready_after(1_000)),
                ("v2", Behaviour::ready_after(1_000).flaky(0.5)),
            ],
            steps: vec![Step::Start("v2", 6), Step::Sleep(1_000), Step::List],
            expect: &[
                "0 start v2 x6: v2-2 starting, v2-3 starting, v2-4 starting, v2-5 starting, v2-6 starting, v2-7 starting",
                "1000 sleep 1000",
                "1000 list: v1-1 ready 1000ms, v2-2 ready 1000ms, v2-3 failed 1000ms, v2-4 failed 1000ms, v2-5 ready 1000ms, v2-6 failed 1000ms, v2-7 failed 1000ms",
                "extremes: at most 7 instances, at least 1 ready",
            ],
        },
    ]
}
