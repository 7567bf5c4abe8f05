//! `rollout bench rollout`: a real rolling update of `demo-app` processes,
//! timed against its physical limit.
//!
//! An in-process agent (temporary home) deploys `replicas` instances of
//! v1, then rolls to v2 one at a time (max-surge 1, max-unavailable 0).
//! Each instance needs `ready_delay_ms` before its health check passes, so
//! no rollout can finish faster than, per batch, the time a process takes
//! to start listening plus that delay. The ratio of the measured wall time
//! to that limit is what the engine, the policy and the probes add.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::agent::Agent;
use crate::agent::RunRequest;
use crate::executor::DurableRuntime;
use crate::spec::ServiceSpec;
use crate::store::RolloutRow;

/// Figures of `rollout bench rollout`; units are in the names.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutFigures {
    /// Instances replaced.
    pub replicas: u32,
    /// Readiness delay of every instance.
    pub ready_delay_ms: u64,
    /// Median time from spawning `demo-app` to its port accepting.
    pub process_start_ms: f64,
    /// The rolling update v1 -> v2, request to outcome.
    pub wall_ms: f64,
    /// Batches x (process start + readiness delay).
    pub physical_limit_ms: f64,
    /// `wall_ms / physical_limit_ms`.
    pub ratio: f64,
    /// What each batch costs above its physical limit.
    pub overhead_per_batch_ms: f64,
    /// How the rollout ended, and why when it did not complete (it must
    /// complete for the figures to mean anything; on a machine busy with
    /// other work a probe may time out and roll it back).
    pub outcome: String,
}

/// The demo-app binary of a bench: `app` made absolute (the bench's specs
/// are read from no file: a relative path would be taken from `/`), else
/// the one next to this executable.
pub fn demo_app(app: Option<&Path>) -> anyhow::Result<PathBuf> {
    match app {
        Some(app) => std::path::absolute(app).with_context(|| format!("--app {}", app.display())),
        None => sibling_demo_app(),
    }
}

/// The `demo-app` binary next to this executable (cargo builds both into
/// the same directory).
pub fn sibling_demo_app() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let app = exe.with_file_name("demo-app");
    anyhow::ensure!(
        app.is_file(),
        "{} not found: build it with `cargo build --release` (it builds examples/demo-app next to rollout)",
        app.display()
    );
    Ok(app)
}

/// Median time from spawning `app` to its port accepting a connection.
fn process_start(app: &Path) -> anyhow::Result<Duration> {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let port = crate::fleet::free_port()?;
        let started = Instant::now();
        let mut child = std::process::Command::new(app)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", app.display()))?;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "demo-app did not listen"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort_unstable();
    Ok(samples[samples.len() / 2])
}

/// A spec of `replicas` demo-app instances of `version`.
pub(super) fn spec(
    app: &Path,
    replicas: u32,
    version: &str,
    delay_ms: u64,
    surge: &str,
) -> anyhow::Result<String> {
    let text = format!(
        r#"name = "bench"
replicas = {replicas}
stop-grace = "2s"
[revision]
command = "{app}"
env = {{ VERSION = "{version}", READY_AFTER_MS = "{delay_ms}" }}
[health]
http = {{ path = "/healthz", status = 200 }}
interval = "2ms"
timeout = "500ms"
[guardrails]
max-surge = "{surge}"
min-available = "0%"
[policy]
name = "rolling"
params = {{ max-surge = "{surge}", max-unavailable = "0" }}
"#,
        app = app.display()
    );
    Ok(ServiceSpec::parse(&text, "bench", Path::new("/"))?.to_toml())
}

/// Run one rollout to its end on `agent`: how it ended, and its wall time.
pub async fn roll(agent: &Arc<Agent>, spec: String) -> anyhow::Result<(RolloutRow, Duration)> {
    let started = Instant::now();
    let request = RunRequest {
        spec,
        origin: "bench".into(),
        policy: None,
        params: Vec::new(),
        cause: None,
    };
    let id = agent
        .run(request)?
        .rollout
        .context("the rollout did not start: the service already runs this spec")?;
    let ended = agent.wait(id).await?;
    Ok((ended, started.elapsed()))
}

/// Measure a rolling update of `replicas` instances of `app`.
pub async fn rollout_figures(
    runtime: DurableRuntime,
    app: &Path,
    replicas: u32,
    ready_delay_ms: u64,
) -> anyhow::Result<RolloutFigures> {
    let start = process_start(app)?;
    let home = std::env::temp_dir().join(format!("rollout-bench-{}", std::process::id()));
    let (agent, _) = Agent::open(&home, runtime).await?;
    let result = async {
        let (v1, _) = roll(&agent, spec(app, replicas, "v1", ready_delay_ms, "100%")?).await?;
        anyhow::ensure!(
            v1.state == "completed",
            "deploying v1 ended {}: {}",
            v1.state,
            v1.reason
        );
        roll(&agent, spec(app, replicas, "v2", ready_delay_ms, "1")?).await
    }
    .await;
    agent.stop_all().await?;
    let _ = std::fs::remove_dir_all(&home);
    let (ended, wall) = result?;
    let outcome = match ended.reason.is_empty() {
        true => ended.state,
        false => format!("{}: {}", ended.state, ended.reason),
    };
    let per_batch = start + Duration::from_millis(ready_delay_ms);
    let physical = per_batch * replicas;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(RolloutFigures {
        replicas,
        ready_delay_ms,
        process_start_ms: ms(start),
        wall_ms: ms(wall),
        physical_limit_ms: ms(physical),
        ratio: wall.as_secs_f64() / physical.as_secs_f64(),
        overhead_per_batch_ms: (ms(wall) - ms(physical)) / f64::from(replicas),
        outcome,
    })
}
