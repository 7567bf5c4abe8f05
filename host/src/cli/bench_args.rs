//! The arguments of the benchmarks `rollout-bench` runs (`rollout bench
//! proxy|swarm`), defined here so that `rollout bench proxy --help` and
//! mistyped options are answered by `rollout` itself, before it runs
//! `rollout-bench`.

use std::path::PathBuf;

use super::{LimitArgs, Output};

/// Swarm's default update monitor period.
pub const SWARM_DEFAULT_MONITOR_MS: u64 = 5_000;

/// One side of the comparison of `rollout bench swarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Docker Swarm's own rolling update.
    Swarm,
    /// rollout on its `swarm` backend.
    Rollout,
}

/// Arguments of `rollout bench proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// The demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub app: Option<PathBuf>,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 4)]
    pub seconds: u32,
    /// Concurrent connections of the load generator (wrk).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Rounds of runs, the proxy and nginx in turn (the other order each
    /// round); medians are reported.
    #[arg(long, default_value_t = 7)]
    pub rounds: u32,
    /// The policy runtime's limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `rollout bench swarm`.
#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Instances to replace.
    #[arg(long, default_value_t = 10)]
    pub replicas: u32,
    /// The image deployed first.
    #[arg(long, default_value = "rollout-bench-demo:v1", value_name = "IMAGE")]
    pub image_v1: String,
    /// The image rolled out.
    #[arg(long, default_value = "rollout-bench-demo:v2", value_name = "IMAGE")]
    pub image_v2: String,
    /// An image that fails its health check once `UNHEALTHY_AFTER_MS` has passed (rolled back).
    #[arg(long, default_value = "rollout-bench-demo:bad", value_name = "IMAGE")]
    pub bad_image: String,
    /// Health check interval, on both sides.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub health_interval_ms: u64,
    /// Swarm's update and rollback monitor period (Swarm's default: 5000).
    #[arg(long, default_value_t = SWARM_DEFAULT_MONITOR_MS, value_name = "MS")]
    pub swarm_monitor_ms: u64,
    /// Run Swarm as `docker service update --update-parallelism 1
    /// --update-failure-action rollback` leaves it (its defaults for the
    /// rest: stop-first, 3 health retries, no init), not tuned to equal
    /// safety.
    #[arg(long)]
    pub swarm_defaults: bool,
    /// Measure one side only.
    #[arg(long, value_enum, value_name = "SIDE")]
    pub only: Option<Side>,
    /// The policy runtime's limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}
