//! `rollout bench runtime`: what the policy runtime costs.
//!
//! Compile time, precompiled load time, instantiation, one host call from
//! inside a guest, and the wall time of a simulated 10,000-instance rolling
//! update. Figures, not assertions: tests check behaviour.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::sim::SimBackend;
use crate::clock::Clock;
use crate::executor::PolicyRuntime;
use crate::executor::Session;
use crate::executor::guardrails::GuardrailSpec;
use crate::executor::operator::Operator;
use crate::model::{Outcome, RolloutInfo};
use crate::runtime::{PolicyError, PolicySource};
use crate::scenario::{self, Scenario};

/// Host calls per guest run when timing one call: `now-ms` does not reset
/// the CPU budget, so the run must stay well under the 100 ms limit.
const CALLS: u64 = 5_000;

/// Figures of `rollout bench runtime`; units are in the names.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFigures {
    /// Compiling the rolling policy with Cranelift.
    pub compile_ms: f64,
    /// Loading it precompiled from disk.
    pub load_precompiled_ms: f64,
    /// Median: a fresh store plus instantiation (pooling allocator).
    pub instantiate_us: f64,
    /// Median: one guest-to-host call (`clock.now-ms`) and back.
    pub host_call_ns: f64,
    /// A simulated rolling update of 10,000 instances, policy included.
    pub sim_rollout_10000_ms: f64,
    /// Outcome of that rollout (it must complete for the figure to mean anything).
    pub sim_rollout_10000_outcome: String,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An idle session, for timing the runtime alone.
fn idle_session(params: Vec<(String, String)>) -> Session {
    let clock = Clock::virtual_at_zero();
    let info = RolloutInfo {
        service: "bench".into(),
        from_revision: None,
        to_revision: "v1".into(),
        replicas: 0,
        params,
    };
    let sim = SimBackend::new(clock.clone(), "bench", BTreeMap::new(), 0, 0);
    Session::new(
        info,
        Box::new(sim),
        clock,
        &GuardrailSpec::default(),
        Operator::default(),
    )
}

/// Measure the runtime; `runtime` caches nothing (timing compiles).
pub async fn runtime_figures(runtime: &PolicyRuntime) -> Result<RuntimeFigures, PolicyError> {
    let rolling = PolicySource::parse("rolling")?;
    let bytes = rolling.bytes()?;
    let invalid = |e: wasmtime::Error| PolicyError::Invalid {
        policy: "rolling".into(),
        reason: format!("{e:#}"),
    };

    let mut compiles = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        runtime.compile_uncached(&bytes).map_err(invalid)?;
        compiles.push(started.elapsed());
    }

    let compiled = runtime
        .engine()
        .precompile_component(&bytes)
        .map_err(invalid)?;
    let file = std::env::temp_dir().join(format!("rollout-bench-{}.cwasm", std::process::id()));
    std::fs::write(&file, &compiled).map_err(|e| PolicyError::NotFound {
        policy: file.display().to_string(),
        reason: format!("cannot write it: {e}"),
    })?;
    let mut loads = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        // SAFETY: the file was just written by this engine's precompile.
        let loaded =
            unsafe { wasmtime::component::Component::deserialize_file(runtime.engine(), &file) };
        loads.push(started.elapsed());
        loaded.map_err(invalid)?;
    }
    let _ = std::fs::remove_file(&file);

    let policy = runtime.load(&rolling)?;
    let mut instantiations = Vec::new();
    for _ in 0..1_000 {
        instantiations.push(
            runtime
                .time_instantiate(&policy, idle_session(vec![]))
                .await?,
        );
    }

    let calls = runtime.load(&PolicySource::bench_calls())?;
    let mut per_call = Vec::new();
    for _ in 0..21 {
        let mut timed = [Duration::ZERO; 2];
        for (slot, n) in [(0, 0), (1, CALLS)] {
            let session = idle_session(vec![("calls".into(), n.to_string())]);
            let started = Instant::now();
            let (_, result) = runtime.run(&calls, session).await;
            timed[slot] = started.elapsed();
            result?;
        }
        per_call.push(timed[1].saturating_sub(timed[0]) / CALLS as u32);
    }

    let big = Scenario::parse(
        "replicas = 10000\nfrom = \"v1\"\nto = \"v2\"\n[params]\nmax-surge = \"10%\"\n[revisions.v2]\nready-after = \"20s\"\n",
    )
    .map_err(|e| PolicyError::NotFound {
        policy: "bench scenario".into(),
        reason: e.to_string(),
    })?;
    let report = scenario::simulate(runtime, &policy, &big, &[]).await;

    Ok(RuntimeFigures {
        compile_ms: ms(median(compiles)),
        load_precompiled_ms: ms(median(loads)),
        instantiate_us: median(instantiations).as_secs_f64() * 1e6,
        host_call_ns: median(per_call).as_secs_f64() * 1e9,
        sim_rollout_10000_ms: ms(report.wall),
        sim_rollout_10000_outcome: match report.outcome {
            Outcome::Completed => "completed".into(),
            other => other.to_string(),
        },
    })
}
