//! `rollout bench swarm`: a rolling update on rollout's `swarm` backend
//! against Docker Swarm's own rolling update, on the same machine in the
//! same run, with the same images and equal safety.
//!
//! **Swarm's side** (the baseline), through the Docker API: one replicated
//! service of `replicas` tasks of `image-v1`, each in its own network
//! namespace on the default network (no published port), listening on
//! `0.0.0.0:8080`, with `docker-init` as PID 1 and the health check
//! `["CMD", "/demo-app", "--check"]` every `health-interval`. The update
//! config is parallelism 1, delay 0, order `start-first`, failure action
//! `rollback`, max failure ratio 0 and monitor `swarm-monitor` (Swarm's
//! default, 5 s, unless told otherwise); the rollback config is the same
//! with failure action `pause`. Once every task runs and is healthy, the
//! image becomes `image-v2`: `swarm_ms` is the time from the update request
//! to `UpdateStatus.State == completed`, and `swarm_all_running_ms` the
//! time until every slot runs a healthy v2 task (Swarm then keeps watching
//! the last tasks for the monitor period before it says completed). Then
//! the image becomes `bad-image`, twice, each rolled back to v2: first
//! never healthy (`never_healthy`), then breaking after it runs
//! (`breaks`, see below). Of each, `swarm_rollback_ms` is the time to
//! `rollback_completed`, and `swarm_rollback_after_first_failure_ms` the
//! time from the end of the update's first failed health check (read from
//! the failed task's container, `State.Health.Log`) to then. The service is
//! removed at the end, also after an error; a service of an earlier run
//! killed before its end (label `rollout.bench=swarm`) is removed first.
//!
//! **rollout's side**: an agent in a temporary home runs a service of
//! `replicas` instances on the `swarm` backend (Swarm tasks on host
//! networking, each on a loopback `$PORT`; see `backend::swarm`), probed
//! by the agent with `GET /healthz` every `health-interval`; the built-in
//! `rolling` policy with max-surge 1, max-unavailable 0, and both sides'
//! SIGTERM-to-SIGKILL grace at 10 s; `[health] start-period` is two
//! health intervals (`start_period_ms`). It deploys v1, then rolls to v2
//! (`rollout_ms`, request to outcome) and to each bad image
//! (`rollback_ms`; it must end rolled back), and reads from the journal
//! the time from the first failed check of a bad instance (the instance
//! seen unhealthy) to the end of the rollback
//! (`rollback_after_first_failure_ms`). Everything is stopped at the end.
//!
//! **Equal safety**: neither side may trade safety for speed. Both
//! - never run fewer than `replicas` healthy instances, nor more than one
//!   extra (Swarm's `start-first` with parallelism 1 is max-surge 1,
//!   max-unavailable 0);
//! - admit a new instance only after the same HTTP check passed
//!   (`/healthz` answering 200, at most 1 s per probe: `demo-app --check`'s
//!   own budget), probed at the same frequency (`health-interval`);
//! - declare an instance unhealthy at its first failed check (Swarm's
//!   `Retries` is 1: rollout's monitor has no retries either), and one
//!   that never passes at its first failed check after a grace period
//!   (Docker checks first one interval after the container started;
//!   rollout's `start-period`, two intervals after it asked for the
//!   instance, is the more lenient: Swarm takes 0.3-0.5 s to start one);
//! - roll back at the first failed new instance (Swarm's max failure ratio
//!   0; the rolling policy's failure threshold 1), restoring the old
//!   revision one instance at a time, new before old.
//!
//! What differs is each system's design, and is what is measured: Docker
//! runs a container's first health check one interval after it starts,
//! rollout probes at once; Swarm runs the check as an exec in the
//! container, rollout as a request from the agent; and Swarm watches every
//! updated task for the monitor period (5 s) after it runs and declares an
//! update (or a rollback) complete only after that period has passed for
//! the last one, while the rolling policy (min-ready-ms 0) judges each
//! instance once ready and keeps checking earlier ones until the last
//! batch, but does not wait after it. `swarm_all_running_ms` excludes that
//! final wait.
//!
//! The bad revisions are `bad-image` with `UNHEALTHY_AFTER_MS` set on
//! both sides: to 0 (`never_healthy`: it never passes a check, the common
//! bad release), then to 1.5 health intervals (`breaks`: it passes its
//! first check, then fails every check, a release that breaks after it
//! starts, so that several instances run it before the first failure).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{
    HealthConfig, LocalNodeState, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};
use serde::Serialize;

use rollout::agent::{Agent, revision_id};
use rollout::backend::docker::{Connection, is_status};
use rollout::bench::rollout::roll;
use rollout::cli::bench_args::Side;
use rollout::executor::DurableRuntime;
use rollout::journal::Kind;
use rollout::spec::ServiceSpec as RolloutSpec;
use rollout::store::JournalRow;

/// Label on the Swarm baseline's service, to find leftovers of an
/// interrupted run.
const BENCH_LABEL: &str = "rollout.bench";
/// Port the baseline's tasks listen on, each in its own network namespace.
const TASK_PORT: u16 = 8080;
/// How often the baseline's service and tasks are read.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for the baseline's first deployment.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for one update (or rollback) of the baseline.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(900);
/// What a healthy image failing to roll out most likely means.
const BUSY: &str = "a healthy image failed a health check; is the machine busy? \
    (on both sides one failed check, or one that takes over 1 s, fails an instance: \
    run the bench on an otherwise idle machine)";
/// Name of rollout's benchmarked service.
const SERVICE: &str = "bench-swarm";

/// What to run, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmOptions {
    /// Instances (tasks) of the service.
    pub replicas: u32,
    /// The image deployed first.
    pub image_v1: String,
    /// The image rolled out (v1 -> v2).
    pub image_v2: String,
    /// The image whose health check fails (v2 -> bad, rolled back).
    pub bad_image: String,
    /// Health check interval, both sides.
    pub health_interval_ms: u64,
    /// Swarm's update and rollback monitor period.
    pub swarm_monitor_ms: u64,
    /// Swarm as `docker service update --update-parallelism 1
    /// --update-failure-action rollback` leaves it: its defaults for
    /// everything else (stop-first, 3 retries of the health check, no
    /// init, default rollback config) instead of the tuned, equal-safety
    /// configuration.
    pub swarm_defaults: bool,
    /// Which sides to measure.
    pub only: Option<Side>,
}

/// Figures of `rollout bench swarm`; units are in the names. A side that
/// was not measured (`--only`) has `null` figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SwarmFigures {
    /// Instances (tasks) of the service.
    pub replicas: u32,
    /// Nodes of the swarm.
    pub nodes: u32,
    /// Health check interval, both sides.
    pub health_interval_ms: u64,
    /// `UNHEALTHY_AFTER_MS` of the bad revision: 1.5 health intervals.
    pub unhealthy_after_ms: u64,
    /// Swarm's update and rollback monitor period.
    pub swarm_monitor_ms: u64,
    /// Swarm ran with its defaults beyond parallelism 1 and failure action
    /// rollback (see [`SwarmOptions::swarm_defaults`]).
    pub swarm_defaults: bool,
    /// rollout, v1 -> v2: request to outcome.
    pub rollout_ms: Option<f64>,
    /// Swarm, v1 -> v2: update request to `completed`.
    pub swarm_ms: Option<f64>,
    /// Swarm, v1 -> v2: update request to every slot running a healthy v2
    /// task (before the final monitor period).
    pub swarm_all_running_ms: Option<f64>,
    /// `swarm_ms / rollout_ms`.
    pub speedup: Option<f64>,
    /// rollout's `[health] start-period`: two health intervals.
    pub start_period_ms: u64,
    /// The bad image that passes its first check and breaks
    /// (`unhealthy_after_ms`), rolled back from v2 (flattened: `rollback_ms`
    /// and the rest at the top level).
    #[serde(flatten)]
    pub breaks: BadFigures,
    /// The bad image that never passes a check (`UNHEALTHY_AFTER_MS=0`),
    /// rolled back from v2.
    pub never_healthy: BadFigures,
}

/// How each side rolled back one bad image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BadFigures {
    /// rollout, v2 -> bad: request to the outcome (rolled back).
    pub rollback_ms: Option<f64>,
    /// Swarm, v2 -> bad: update request to `rollback_completed`.
    pub swarm_rollback_ms: Option<f64>,
    /// Whether Swarm rolled the bad image back at all (with its defaults it
    /// may call the update done first).
    pub swarm_rolled_back: Option<bool>,
    /// `swarm_rollback_ms / rollback_ms`.
    pub rollback_speedup: Option<f64>,
    /// rollout: from the first failed check of a bad instance to the end
    /// of the rollback, from the journal (`null` if no bad instance was
    /// ever seen unhealthy or failed, e.g. one that was never ready).
    pub rollback_after_first_failure_ms: Option<f64>,
    /// Swarm: from the end of the first failed health check of a bad task
    /// to `rollback_completed`.
    pub swarm_rollback_after_first_failure_ms: Option<f64>,
    /// Why rollout rolled back.
    pub rollback_reason: Option<String>,
    /// Why Swarm rolled back (its update status message while it did).
    pub swarm_rollback_message: Option<String>,
}

impl BadFigures {
    /// Fill in the ratio of the two sides' rollbacks.
    fn compare(&mut self) {
        self.rollback_speedup = ratio(self.swarm_rollback_ms, self.rollback_ms);
    }
}

/// Measure both sides (or the one `--only` names).
pub async fn swarm_figures(
    runtime: DurableRuntime,
    options: &SwarmOptions,
) -> anyhow::Result<SwarmFigures> {
    anyhow::ensure!(options.replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        options.health_interval_ms >= 10,
        "--health-interval-ms must be at least 10"
    );
    let connection = Connection::default();
    let docker = connection
        .get()
        .await
        .context("the bench needs a Docker engine in a swarm")?;
    let nodes = check_swarm(docker).await?;
    for image in [&options.image_v1, &options.image_v2, &options.bad_image] {
        docker.inspect_image(image).await.with_context(|| {
            format!(
                "image {image} is not on the Docker host: run benches/bench-swarm.sh, which builds rollout-bench-demo:v1|v2|bad, or name your own with --image-v1, --image-v2, --bad-image"
            )
        })?;
    }
    let mut figures = SwarmFigures {
        replicas: options.replicas,
        nodes,
        health_interval_ms: options.health_interval_ms,
        unhealthy_after_ms: unhealthy_after_ms(options.health_interval_ms),
        start_period_ms: start_period_ms(options.health_interval_ms),
        swarm_monitor_ms: options.swarm_monitor_ms,
        swarm_defaults: options.swarm_defaults,
        ..SwarmFigures::default()
    };
    if options.only != Some(Side::Rollout) {
        baseline(docker, options, &mut figures).await?;
    }
    if options.only != Some(Side::Swarm) {
        rollout_side(runtime, options, &mut figures).await?;
    }
    figures.speedup = ratio(figures.swarm_ms, figures.rollout_ms);
    figures.breaks.compare();
    figures.never_healthy.compare();
    Ok(figures)
}

/// `a / b` when both are known.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// The bad revision's `UNHEALTHY_AFTER_MS`: after its first check (one
/// interval after start on Swarm, at most one after start on rollout),
/// before its second.
fn unhealthy_after_ms(interval_ms: u64) -> u64 {
    interval_ms.saturating_mul(3) / 2
}

/// rollout's `[health] start-period`: two health intervals, more lenient
/// than Docker's first check one interval after the container started
/// (Swarm takes 0.3-0.5 s to start one after it is asked).
fn start_period_ms(interval_ms: u64) -> u64 {
    interval_ms.saturating_mul(2)
}

/// A progress line on stderr (stdout holds the figures).
fn progress(line: impl std::fmt::Display) {
    eprintln!("bench swarm: {line}");
}

/// Milliseconds in `d`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fails unless the Docker engine is a manager of an active swarm; the
/// swarm's number of nodes.
async fn check_swarm(docker: &Docker) -> anyhow::Result<u32> {
    let info = docker
        .info()
        .await
        .context("cannot read `docker info` from the Docker daemon")?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
        bail!(
            "this Docker engine is not in a swarm: run `docker swarm init --advertise-addr 127.0.0.1` (benches/bench-swarm.sh does)"
        );
    }
    if swarm.control_available != Some(true) {
        bail!("this Docker engine is a swarm worker: run the bench on a manager");
    }
    let nodes = swarm.nodes.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
    if nodes > 1 {
        progress(format!(
            "the swarm has {nodes} nodes: a task on another node than this one stops through the manager, after Swarm's 2 s gossip delay, on both sides"
        ));
    }
    Ok(nodes)
}

// ---------------------------------------------------------------------------
// Swarm's side

/// Swarm's rolling update of the baseline service, then its rollback.
async fn baseline(
    docker: &Docker,
    options: &SwarmOptions,
    figures: &mut SwarmFigures,
) -> anyhow::Result<()> {
    remove_leftovers(docker).await?;
    let name = format!("rollout-bench-swarm-{}", std::process::id());
    let result = measure_baseline(docker, &name, options, figures).await;
    let removed = match docker.delete_service(&name).await {
        // Never created (the creation failed): nothing to remove.
        Err(e) if is_status(&e, 404) => Ok(()),
        removed => removed.with_context(|| {
            format!(
                "cannot remove the baseline service {name}: remove it with `docker service rm {name}`"
            )
        }),
    };
    match (result, removed) {
        (Err(e), Err(not_removed)) => {
            progress(format!("{not_removed:#}"));
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
        (Ok(()), removed) => removed,
    }
}

/// Remove baseline services a run killed before its end left behind.
async fn remove_leftovers(docker: &Docker) -> anyhow::Result<()> {
    let filters = HashMap::from([("label", vec![format!("{BENCH_LABEL}=swarm")])]);
    let options = ListServicesOptionsBuilder::new().filters(&filters).build();
    let services = docker
        .list_services(Some(options))
        .await
        .context("cannot list Swarm services")?;
    for service in services {
        let Some(id) = service.id else { continue };
        let name = service
            .spec
            .and_then(|s| s.name)
            .unwrap_or_else(|| id.clone());
        progress(format!("removing {name}, left by an interrupted run"));
        docker
            .delete_service(&id)
            .await
            .with_context(|| format!("cannot remove the leftover service {name}"))?;
    }
    Ok(())
}

async fn measure_baseline(
    docker: &Docker,
    name: &str,
    options: &SwarmOptions,
    figures: &mut SwarmFigures,
) -> anyhow::Result<()> {
    progress(format!(
        "Swarm: creating {name}, {} task(s) of {}",
        options.replicas, options.image_v1
    ));
    docker
        .create_service(baseline_spec(name, options, &options.image_v1, &[]), None)
        .await
        .with_context(|| format!("cannot create the Swarm service {name}"))?;
    wait_deployed(docker, name, options).await?;

    progress(format!("Swarm: updating to {}", options.image_v2));
    let spec = baseline_spec(name, options, &options.image_v2, &[]);
    let update = update_to(docker, name, spec).await?;
    let (status, _) = wait_update(docker, name, update, Some(&options.image_v2)).await?;
    if status.state != ServiceUpdateStatusStateEnum::COMPLETED {
        bail!(
            "Swarm's update to {} ended {} ({}), not completed: {BUSY}",
            options.image_v2,
            status.state,
            status.message
        );
    }
    figures.swarm_ms = Some(ms(status.took));
    figures.swarm_all_running_ms = status.all_running.map(ms);
    progress(format!(
        "Swarm: completed in {:.0} ms (every task on v2 after {})",
        ms(status.took),
        status
            .all_running
            .map_or("-".to_string(), |d| format!("{:.0} ms", ms(d)))
    ));

    let never = ["UNHEALTHY_AFTER_MS=0".to_string()];
    swarm_bad(docker, name, options, &never, &mut figures.never_healthy).await?;
    let breaks = [format!("UNHEALTHY_AFTER_MS={}", figures.unhealthy_after_ms)];
    swarm_bad(docker, name, options, &breaks, &mut figures.breaks).await
}

/// Update the baseline from v2 to `bad-image` with `env`, which Swarm
/// should roll back: into `figures`, how long that took (from the request,
/// and from the first failed check of this update) or that it did not.
async fn swarm_bad(
    docker: &Docker,
    name: &str,
    options: &SwarmOptions,
    env: &[String],
    figures: &mut BadFigures,
) -> anyhow::Result<()> {
    progress(format!(
        "Swarm: updating to {} ({})",
        options.bad_image,
        env.join(" ")
    ));
    let spec = baseline_spec(name, options, &options.bad_image, env);
    let update = update_to(docker, name, spec).await?;
    let sent_unix_ms = update.sent_unix_ms;
    let (status, ended_unix_ms) = wait_update(docker, name, update, None).await?;
    if status.state != ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED {
        // With its defaults (3 retries, a check every interval) Swarm calls
        // the update done before a task that breaks once it runs is found
        // unhealthy: it does not roll back, which is a figure too.
        figures.swarm_rolled_back = Some(false);
        figures.swarm_rollback_message = Some(format!(
            "Swarm did not roll back: its update ended {} ({})",
            status.state, status.message
        ));
        progress(format!(
            "Swarm: did NOT roll back the bad image: the update ended {} after {:.0} ms",
            status.state,
            ms(status.took)
        ));
        // Back to v2 for what follows.
        let spec = baseline_spec(name, options, &options.image_v2, &[]);
        let update = update_to(docker, name, spec).await?;
        let (back, _) = wait_update(docker, name, update, None).await?;
        if back.state != ServiceUpdateStatusStateEnum::COMPLETED {
            bail!(
                "Swarm's update back to {} ended {} ({}), not completed: see `docker service ps {name}`",
                options.image_v2,
                back.state,
                back.message
            );
        }
        return Ok(());
    }
    figures.swarm_rolled_back = Some(true);
    figures.swarm_rollback_ms = Some(ms(status.took));
    figures.swarm_rollback_message = Some(status.message);
    let first_failure =
        first_failed_check_unix_ms(docker, name, &options.bad_image, sent_unix_ms).await?;
    figures.swarm_rollback_after_first_failure_ms =
        first_failure.map(|at| (ended_unix_ms - at).max(0.0));
    progress(format!(
        "Swarm: rolled back in {:.0} ms ({} ms after the first failed check)",
        ms(status.took),
        figures
            .swarm_rollback_after_first_failure_ms
            .map_or("?".to_string(), |d| format!("{d:.0}"))
    ));
    Ok(())
}

/// The baseline service: `replicas` tasks of `image` (with `env` added),
/// health-checked by `demo-app --check`, updated one at a time, start
/// first, rolled back on the first failure; or, with `swarm_defaults`,
/// only one at a time and rolled back on failure, Swarm's defaults for the
/// rest.
fn baseline_spec(name: &str, options: &SwarmOptions, image: &str, env: &[String]) -> ServiceSpec {
    let spec = tuned_spec(name, options, image, env);
    if !options.swarm_defaults {
        return spec;
    }
    let mut spec = spec;
    if let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        container.init = None;
        container.stop_grace_period = None;
        if let Some(health) = container.health_check.as_mut() {
            health.retries = None;
            health.timeout = None;
        }
    }
    spec.update_config = Some(ServiceSpecUpdateConfig {
        parallelism: Some(1),
        failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
        ..Default::default()
    });
    spec.rollback_config = None;
    spec
}

/// The tuned baseline (see the module's "equal safety").
fn tuned_spec(name: &str, options: &SwarmOptions, image: &str, env: &[String]) -> ServiceSpec {
    let ns = |ms: u64| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let monitor = ns(options.swarm_monitor_ms);
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([(
            BENCH_LABEL.to_string(),
            "swarm".to_string(),
        )])),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(options.replicas)),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                env: Some(
                    [format!("PORT={TASK_PORT}"), "HOST=0.0.0.0".to_string()]
                        .into_iter()
                        .chain(env.iter().cloned())
                        .collect(),
                ),
                init: Some(true),
                stop_grace_period: Some(ns(10_000)),
                health_check: Some(HealthConfig {
                    test: Some(vec![
                        "CMD".to_string(),
                        "/demo-app".to_string(),
                        "--check".to_string(),
                    ]),
                    interval: Some(ns(options.health_interval_ms)),
                    // The check gives up after 1 s by itself; this only
                    // covers the exec's own overhead.
                    timeout: Some(ns(2_000)),
                    retries: Some(1),
                    start_period: None,
                    start_interval: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(monitor),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        }),
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(monitor),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
        }),
        ..Default::default()
    }
}

/// The service's tasks that should run.
async fn running_tasks(docker: &Docker, name: &str) -> anyhow::Result<Vec<Task>> {
    let filters = HashMap::from([
        ("service", vec![name.to_string()]),
        ("desired-state", vec!["running".to_string()]),
    ]);
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    docker
        .list_tasks(Some(options))
        .await
        .with_context(|| format!("cannot list the tasks of {name}"))
}

/// The image a task runs.
fn task_image(task: &Task) -> Option<&str> {
    task.spec
        .as_ref()?
        .container_spec
        .as_ref()?
        .image
        .as_deref()
}

/// Whether `replicas` tasks run (so are healthy: Swarm reports a task with
/// a health check running only once it is), all of `image` if given.
fn every_task_runs(tasks: &[Task], replicas: u32, image: Option<&str>) -> bool {
    let running = tasks
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter(|t| image.is_none() || task_image(t) == image)
        .count();
    running == replicas as usize
}

/// Wait until every task of the new service runs and is healthy.
async fn wait_deployed(docker: &Docker, name: &str, options: &SwarmOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let tasks = running_tasks(docker, name).await?;
        if every_task_runs(&tasks, options.replicas, None) {
            progress(format!(
                "Swarm: {} task(s) running and healthy after {:.0} ms",
                options.replicas,
                ms(started.elapsed())
            ));
            return Ok(());
        }
        if started.elapsed() > DEPLOY_TIMEOUT {
            let failed = tasks
                .iter()
                .filter_map(|t| t.status.as_ref()?.err.clone())
                .next()
                .unwrap_or_default();
            bail!(
                "Swarm did not run {} healthy task(s) of {} within {} s {failed}: see `docker service ps {name} --no-trunc`",
                options.replicas,
                options.image_v1,
                DEPLOY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An update request: when it was sent.
struct Update {
    sent: Instant,
    sent_unix_ms: f64,
}

/// Ask Swarm to run `spec` instead of the service's current spec.
///
/// The whole spec is sent, never one read back from the daemon: bollard
/// reads the container spec's health check under `HealthCheck` while
/// Engine 20.10 writes `Healthcheck`, so a spec read back, changed and sent
/// would silently drop the health check.
async fn update_to(docker: &Docker, name: &str, spec: ServiceSpec) -> anyhow::Result<Update> {
    let service = docker
        .inspect_service(name, None)
        .await
        .with_context(|| format!("cannot inspect the Swarm service {name}"))?;
    let version = service
        .version
        .and_then(|v| v.index)
        .and_then(|i| i32::try_from(i).ok())
        .context("the Swarm service has no usable version index")?;
    let options = UpdateServiceOptionsBuilder::new().version(version).build();
    let update = Update {
        sent: Instant::now(),
        sent_unix_ms: unix_ms_now(),
    };
    docker
        .update_service(name, spec, options, None)
        .await
        .with_context(|| format!("cannot update the Swarm service {name}"))?;
    Ok(update)
}

/// How an update ended.
struct UpdateEnd {
    state: ServiceUpdateStatusStateEnum,
    /// Why it rolled back if it did, else its last status message.
    message: String,
    /// From the request to the end state.
    took: Duration,
    /// From the request to every slot running `image` (when asked).
    all_running: Option<Duration>,
}

/// Follow an update to its end state (completed, paused, rollback
/// completed or paused); how it ended and when, in Unix ms. With `image`,
/// also notes when every task runs it.
async fn wait_update(
    docker: &Docker,
    name: &str,
    update: Update,
    image: Option<&str>,
) -> anyhow::Result<(UpdateEnd, f64)> {
    use ServiceUpdateStatusStateEnum as State;
    let replicas = replicas_of(docker, name).await?;
    let mut all_running = None;
    let mut rollback_reason = None;
    loop {
        let service = docker
            .inspect_service(name, None)
            .await
            .with_context(|| format!("cannot inspect the Swarm service {name}"))?;
        let observed = update.sent.elapsed();
        let observed_unix_ms = unix_ms_now();
        let status = service.update_status.unwrap_or_default();
        let state = status.state.unwrap_or(State::EMPTY);
        // Why Swarm rolls back is said only while it does.
        if state == State::ROLLBACK_STARTED && rollback_reason.is_none() {
            rollback_reason = status.message.clone();
        }
        if let (Some(image), None) = (image, all_running) {
            let tasks = running_tasks(docker, name).await?;
            if every_task_runs(&tasks, replicas, Some(image)) {
                all_running = Some(update.sent.elapsed());
            }
        }
        if matches!(
            state,
            State::COMPLETED | State::PAUSED | State::ROLLBACK_COMPLETED | State::ROLLBACK_PAUSED
        ) {
            // Swarm's own end time is more precise than this poll's.
            let ended_unix_ms = status
                .completed_at
                .as_deref()
                .and_then(parse_rfc3339_unix_ms)
                .filter(|at| *at >= update.sent_unix_ms && *at <= observed_unix_ms + 1.0)
                .unwrap_or(observed_unix_ms);
            let took =
                Duration::from_secs_f64((ended_unix_ms - update.sent_unix_ms).max(0.0) / 1e3)
                    .min(observed);
            let end = UpdateEnd {
                state,
                message: rollback_reason.or(status.message).unwrap_or_default(),
                took,
                all_running: all_running.map(|d: Duration| d.min(took)),
            };
            return Ok((end, ended_unix_ms));
        }
        if observed > UPDATE_TIMEOUT {
            bail!(
                "Swarm's update of {name} did not end within {} s (state {state}): see `docker service ps {name}`",
                UPDATE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The service's replica count.
async fn replicas_of(docker: &Docker, name: &str) -> anyhow::Result<u32> {
    let service = docker
        .inspect_service(name, None)
        .await
        .with_context(|| format!("cannot inspect the Swarm service {name}"))?;
    let replicas = service
        .spec
        .and_then(|s| s.mode)
        .and_then(|m| m.replicated)
        .and_then(|r| r.replicas)
        .context("the Swarm service is not replicated")?;
    u32::try_from(replicas).context("the Swarm service has a negative replica count")
}

/// When the first failed health check since `since_unix_ms` of a task of
/// `image` ended, in Unix ms, from the containers of the service's tasks
/// (Swarm keeps the last few tasks of each slot, with their containers).
/// `None` when no container of `image` logged a failed check (e.g. all were
/// removed).
async fn first_failed_check_unix_ms(
    docker: &Docker,
    name: &str,
    image: &str,
    since_unix_ms: f64,
) -> anyhow::Result<Option<f64>> {
    let filters = HashMap::from([("service", vec![name.to_string()])]);
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    let tasks = docker
        .list_tasks(Some(options))
        .await
        .with_context(|| format!("cannot list the tasks of {name}"))?;
    let mut first: Option<f64> = None;
    for task in tasks.iter().filter(|t| task_image(t) == Some(image)) {
        let Some(container) = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.as_deref())
        else {
            continue;
        };
        // A container already removed has no health log left: skip it.
        let Ok(inspected) = docker.inspect_container(container, None).await else {
            continue;
        };
        let failures = inspected
            .state
            .and_then(|s| s.health)
            .and_then(|h| h.log)
            .unwrap_or_default()
            .into_iter()
            .filter(|check| check.exit_code.is_some_and(|code| code != 0))
            .filter_map(|check| parse_rfc3339_unix_ms(check.end.as_deref()?))
            .filter(|at| *at >= since_unix_ms);
        for at in failures {
            first = Some(first.map_or(at, |f: f64| f.min(at)));
        }
    }
    Ok(first)
}

/// Unix time now, in ms.
fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

/// `2026-11-26T00:30:56.589926205Z` (RFC 3339, as Docker writes times)
/// in Unix ms.
fn parse_rfc3339_unix_ms(text: &str) -> Option<f64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339);
    Some(at.ok()?.unix_timestamp_nanos() as f64 / 1e6)
}

// ---------------------------------------------------------------------------
// rollout's side

/// rollout's spec of the benchmarked service on the swarm backend.
fn rollout_spec(
    options: &SwarmOptions,
    image: &str,
    env: &str,
    surge: &str,
) -> anyhow::Result<String> {
    let text = format!(
        r#"name = "{SERVICE}"
replicas = {replicas}
backend = "swarm"
stop-grace = "10s"
[revision]
image = "{image}"
env = {{ {env} }}
[health]
http = {{ path = "/healthz", status = 200 }}
interval = "{interval}ms"
timeout = "1s"
start-period = "{start_period}ms"
[guardrails]
max-surge = "{surge}"
min-available = "100%"
progress-deadline = "3m"
[policy]
name = "rolling"
params = {{ max-surge = "{surge}", max-unavailable = "0", failure-threshold = "1", min-ready-ms = "0" }}
"#,
        replicas = options.replicas,
        interval = options.health_interval_ms,
        start_period = start_period_ms(options.health_interval_ms),
    );
    Ok(
        RolloutSpec::parse(&text, "bench", std::path::Path::new("/"))
            .context("the bench's own spec is invalid")?
            .to_toml(),
    )
}

/// rollout's side, in an agent with a temporary home.
async fn rollout_side(
    runtime: DurableRuntime,
    options: &SwarmOptions,
    figures: &mut SwarmFigures,
) -> anyhow::Result<()> {
    let home = std::env::temp_dir().join(format!("rollout-bench-swarm-{}", std::process::id()));
    let (agent, _) = Agent::open(&home, runtime)
        .await
        .with_context(|| format!("cannot open an agent in {}", home.display()))?;
    let result = measure_rollout(&agent, options, figures).await;
    let stopped = agent.stop_all().await;
    let _ = std::fs::remove_dir_all(&home);
    result?;
    stopped.context("cannot stop the bench's instances: remove them with `docker service rm`")?;
    Ok(())
}

async fn measure_rollout(
    agent: &Arc<Agent>,
    options: &SwarmOptions,
    figures: &mut SwarmFigures,
) -> anyhow::Result<()> {
    let all = options.replicas.to_string();
    progress(format!(
        "rollout: deploying {} instance(s) of {} on the swarm backend",
        options.replicas, options.image_v1
    ));
    let (ended, took) = roll(agent, rollout_spec(options, &options.image_v1, "", &all)?).await?;
    anyhow::ensure!(
        ended.state == "completed",
        "rollout: deploying v1 ended {}: {}",
        ended.state,
        ended.reason
    );
    progress(format!("rollout: deployed in {:.0} ms", ms(took)));

    progress(format!("rollout: rolling to {}", options.image_v2));
    let (ended, took) = roll(agent, rollout_spec(options, &options.image_v2, "", "1")?).await?;
    anyhow::ensure!(
        ended.state == "completed",
        "rollout: rolling to v2 ended {}: {}: {BUSY}",
        ended.state,
        ended.reason
    );
    figures.rollout_ms = Some(ms(took));
    progress(format!("rollout: completed in {:.0} ms", ms(took)));

    let never = r#"UNHEALTHY_AFTER_MS = "0""#;
    rollout_bad(agent, options, never, &mut figures.never_healthy).await?;
    let breaks = format!(r#"UNHEALTHY_AFTER_MS = "{}""#, figures.unhealthy_after_ms);
    rollout_bad(agent, options, &breaks, &mut figures.breaks).await
}

/// Roll from v2 to `bad-image` with `env`, which must end rolled back:
/// into `figures`, how long that took, from the request and from the
/// first failed check.
async fn rollout_bad(
    agent: &Arc<Agent>,
    options: &SwarmOptions,
    env: &str,
    figures: &mut BadFigures,
) -> anyhow::Result<()> {
    progress(format!("rollout: rolling to {} ({env})", options.bad_image));
    let (ended, took) = roll(agent, rollout_spec(options, &options.bad_image, env, "1")?).await?;
    if ended.state != "rolled-back" {
        bail!(
            "rollout: rolling to {} ended {} ({}), not rolled back: with few replicas the update can end before the first bad check; use more --replicas",
            options.bad_image,
            ended.state,
            ended.reason
        );
    }
    figures.rollback_ms = Some(ms(took));
    let journal = agent.events(ended.id, 0, 0).await?.events;
    figures.rollback_after_first_failure_ms =
        after_first_failure(&journal, &revision_id(ended.to_revision));
    figures.rollback_reason = Some(ended.reason);
    progress(format!(
        "rollout: rolled back in {:.0} ms ({} ms after the first failed check)",
        ms(took),
        figures
            .rollback_after_first_failure_ms
            .map_or("?".to_string(), |d| format!("{d:.0}"))
    ));
    Ok(())
}

/// From the first failed check of an instance of revision `to` (the fleet
/// saw it unhealthy, or failed) to the journal's last entry (the outcome).
fn after_first_failure(journal: &[JournalRow], to: &str) -> Option<f64> {
    let needle_unhealthy = format!("({to}) is unhealthy");
    let needle_failed = format!("({to}) is failed");
    let first = journal
        .iter()
        .filter(|row| row.entry.kind == Kind::Fleet)
        .find(|row| {
            row.entry.text.ends_with(&needle_unhealthy) || row.entry.text.ends_with(&needle_failed)
        })?;
    let last = journal.last()?;
    Some(last.entry.at_ms.saturating_sub(first.entry.at_ms) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout::cli::bench_args::SWARM_DEFAULT_MONITOR_MS;
    use rollout::journal::Entry;

    #[test]
    fn reads_docker_timestamps() {
        let at = parse_rfc3339_unix_ms("2026-11-26T00:30:56.589926205Z").unwrap();
        // 2026-11-26T00:00:00Z is 1795651200 s after the epoch.
        let expected = (1_795_651_200.0 + 30.0 * 60.0 + 56.589_926_205) * 1e3;
        assert!((at - expected).abs() < 0.01, "{at} vs {expected}");
        assert_eq!(parse_rfc3339_unix_ms("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339_unix_ms("1970-01-01T01:00:00+01:00"),
            Some(0.0)
        );
        assert_eq!(
            parse_rfc3339_unix_ms("2000-02-29T00:00:01.5Z"),
            Some(951_782_401_500.0)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-26T00:30:56.x9Z",
        ] {
            assert_eq!(parse_rfc3339_unix_ms(bad), None, "{bad}");
        }
    }

    fn row(seq: i64, at_ms: u64, kind: Kind, text: &str) -> JournalRow {
        JournalRow {
            seq,
            entry: Entry {
                at_ms,
                kind,
                text: text.to_string(),
            },
        }
    }

    #[test]
    fn first_failure_is_the_first_bad_instance_seen_unhealthy() {
        let journal = [
            row(1, 10, Kind::Effect, "start 1 of r3"),
            row(2, 900, Kind::Fleet, "i-4 (r3) is ready"),
            row(3, 1_200, Kind::Fleet, "i-1 (r2) is unhealthy"),
            row(4, 2_000, Kind::Fleet, "i-4 (r3) is unhealthy"),
            row(5, 2_100, Kind::Fleet, "i-5 (r3) is failed"),
            row(6, 3_500, Kind::Host, "rolled back"),
        ];
        assert_eq!(after_first_failure(&journal, "r3"), Some(1_500.0));
        assert_eq!(after_first_failure(&journal[..3], "r3"), None);
    }

    #[test]
    fn the_bad_revision_fails_between_its_first_and_second_check() {
        assert_eq!(unhealthy_after_ms(1_000), 1_500);
        let spec = baseline_spec(
            "b",
            &SwarmOptions {
                replicas: 3,
                image_v1: "i:v1".into(),
                image_v2: "i:v2".into(),
                bad_image: "i:bad".into(),
                health_interval_ms: 250,
                swarm_monitor_ms: SWARM_DEFAULT_MONITOR_MS,
                swarm_defaults: false,
                only: None,
            },
            "i:v2",
            &["A=b".to_string()],
        );
        let container = spec.task_template.unwrap().container_spec.unwrap();
        assert_eq!(container.image.as_deref(), Some("i:v2"));
        assert_eq!(
            container.env.unwrap().last().map(String::as_str),
            Some("A=b")
        );
        let health = container.health_check.unwrap();
        assert_eq!(health.interval, Some(250_000_000));
        assert_eq!(health.retries, Some(1));
        assert_eq!(container.init, Some(true));
        let update = spec.update_config.unwrap();
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(update.monitor, Some(5_000_000_000));
    }
}
