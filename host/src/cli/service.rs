//! `rollout scale`, `rollout restart` and `rollout rm`: service commands
//! that carry no new spec (thin clients of the agent's fleet manager).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Cli, Output};
use crate::api::types::{Removed, ScaleRequest, ServiceStatus, Started};
use crate::model::InstanceState;

/// Arguments of `rollout scale`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: `rollout scale web 5` keeps 5 instances of the revision serving web; \
`rollout scale web 2 --no-wait` drains 3 of them and returns at once.\n\n\
Exit codes: 0 the service has N ready instances of its serving revision and nothing else, \
1 error before any change (unknown service, rollout in progress, N out of range), \
3 not there within --timeout (see `rollout status SERVICE`: the reason and restart count)."
)]
pub struct ScaleArgs {
    /// The service.
    service: String,
    /// How many instances of its serving revision to keep (1 to 1000).
    replicas: u32,
    /// Return once the agent has recorded it, without waiting for the fleet.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for N ready instances, e.g. 90s or 5m.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    timeout: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of `rollout restart`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: `rollout restart web` rolls the spec serving web out again as a \
new revision, through its policy (rolling, canary...), so every instance is replaced.\n\n\
Exit codes: as `rollout run`: 0 completed, 1 error before any change (unknown service, \
rollout in progress), 2 rolled back, 3 failed and left for an operator."
)]
pub struct RestartArgs {
    /// The service.
    service: String,
    /// Output: plain lines, or one JSON object at the end.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of `rollout rm`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: `rollout rm web` drains and stops every instance of web, closes \
its front door and stops listing it; `rollout history web` still shows its revisions. \
`rollout rm web --purge` forgets its history too. Deploying web again later starts afresh.\n\n\
Exit codes: 0 removed, 1 error (unknown service, rollout in progress: abort it first)."
)]
pub struct RmArgs {
    /// The service.
    service: String,
    /// Drop its revisions, rollouts and journal too.
    #[arg(long)]
    purge: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// How often `rollout scale` looks at the service while it waits.
const POLL: Duration = Duration::from_millis(100);

/// Run `rollout scale`.
pub async fn scale(cli: &Cli, args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let timeout = rollout_duration::parse_ms(&args.timeout).ok_or_else(|| {
        anyhow::anyhow!(
            "--timeout {:?}: expected a duration like 90s or 5m; nothing was changed",
            args.timeout
        )
    })?;
    let client = cli.client();
    let path = format!("/v1/services/{}/scale", args.service);
    let request = ScaleRequest {
        replicas: args.replicas,
    };
    let started: Started = client.post(&path, &request).await?;
    let human = args.output == Output::Human;
    if human {
        println!("{}", started.message);
    }
    let deadline = Instant::now() + Duration::from_millis(timeout);
    let status_path = format!("/v1/services/{}", args.service);
    let mut status: ServiceStatus = client.get(&status_path).await?;
    let mut done = converged(&status, args.replicas);
    while !args.no_wait && !done && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        status = client.get(&status_path).await?;
        done = converged(&status, args.replicas);
    }
    let ready = ready_of_serving(&status);
    if human {
        match (done, args.no_wait) {
            (true, _) => println!("{}: {ready}/{} ready", args.service, args.replicas),
            (false, true) => println!("follow it with `rollout status {}`", args.service),
            (false, false) => println!(
                "{}: {ready}/{} ready after {}; see `rollout status {}` for the reason and restart count",
                args.service, args.replicas, args.timeout, args.service
            ),
        }
    } else {
        println!(
            "{}",
            json!({ "service": args.service, "revision": started.to_revision,
                "replicas": args.replicas, "ready": ready, "converged": done,
                "message": started.message })
        );
    }
    Ok(match done || args.no_wait {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(3),
    })
}

/// Ready instances of the serving revision.
fn ready_of_serving(s: &ServiceStatus) -> usize {
    let rev = s.current_revision.map(crate::agent::revision_id);
    s.instances
        .iter()
        .filter(|i| i.state == InstanceState::Ready && Some(&i.revision) == rev.as_ref())
        .count()
}

/// `replicas` ready instances of the serving revision and nothing else.
fn converged(s: &ServiceStatus, replicas: u32) -> bool {
    ready_of_serving(s) == replicas as usize && s.instances.len() == replicas as usize
}

/// Run `rollout restart`.
pub async fn restart(cli: &Cli, args: &RestartArgs) -> anyhow::Result<ExitCode> {
    let client = cli.client();
    let path = format!("/v1/services/{}/restart", args.service);
    let started: Started = client.post(&path, &json!({})).await?;
    super::deploy::follow(&client, &started, args.output).await
}

/// Run `rollout rm`.
pub async fn rm(cli: &Cli, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/services/{}", args.service);
    if args.purge {
        path.push_str("?purge=1");
    }
    let removed: Removed = cli.client().delete(&path).await?;
    match args.output {
        Output::Human => println!("{}", removed.message),
        Output::Json => println!("{}", serde_json::to_string(&removed)?),
    }
    Ok(ExitCode::SUCCESS)
}
