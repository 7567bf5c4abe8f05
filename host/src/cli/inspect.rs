//! `rollout status`, `ls`, `logs`, `history` and the operator commands
//! (`pause`, `resume`, `abort`, `promote`): thin clients of the agent.

use std::path::Path;
use std::process::ExitCode;

use super::{Cli, Output};
use crate::api::client::ClientError;
use crate::api::types::{ControlAnswer, HistoryEntry, ServiceStatus, Started};
use crate::executor::operator::Action;
use crate::model::{Instance, InstanceState};

/// Arguments of `rollout status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One service [default: every service].
    service: Option<String>,
    /// Follow the rollout in progress to its end (exit code: its outcome).
    #[arg(long, requires = "service")]
    watch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of `rollout ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// One service [default: every service].
    service: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of `rollout logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The instance (see `rollout ls`).
    instance: String,
    /// How many of the last lines.
    #[arg(long, short = 'n', default_value_t = 100)]
    lines: u32,
}

/// Arguments of `rollout history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The service.
    service: String,
    /// Show one revision with its whole spec.
    #[arg(long, value_name = "N", conflicts_with = "events")]
    revision: Option<u32>,
    /// Show what the fleet manager did between rollouts instead: instances
    /// replaced (with why), backoffs, scales.
    #[arg(long)]
    events: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of the operator commands.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// The service whose rollout in progress gets the command.
    service: String,
}

fn ready(instances: &[Instance], revision: Option<u32>) -> usize {
    let rev = revision.map(crate::agent::revision_id);
    instances
        .iter()
        .filter(|i| i.state == InstanceState::Ready && Some(&i.revision) == rev.as_ref())
        .count()
}

/// Which revisions run, in how many instances of each state:
/// `r1: 3 ready; r2: 2 ready, 1 failed`.
fn running(instances: &[Instance]) -> String {
    let mut by_revision: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for i in instances
        .iter()
        .filter(|i| i.state != InstanceState::Stopped)
    {
        by_revision
            .entry(i.revision.as_str())
            .or_default()
            .push(i.state.name());
    }
    let revisions: Vec<String> = by_revision
        .into_iter()
        .map(|(revision, mut states)| {
            states.sort_unstable();
            let mut counts: Vec<(usize, &str)> = Vec::new();
            for state in states {
                match counts.last_mut() {
                    Some((n, s)) if *s == state => *n += 1,
                    _ => counts.push((1, state)),
                }
            }
            let counts: Vec<String> = counts.iter().map(|(n, s)| format!("{n} {s}")).collect();
            format!("{revision}: {}", counts.join(", "))
        })
        .collect();
    match revisions.is_empty() {
        true => "nothing".into(),
        false => revisions.join("; "),
    }
}

/// What to do when no rollout runs and the fleet is not the current
/// revision's `replicas` ready instances (an interrupted rollout, instances
/// killed by hand).
fn advice(s: &ServiceStatus) -> Option<String> {
    if s.active.is_some() {
        return None;
    }
    let alive: Vec<_> = s
        .instances
        .iter()
        .filter(|i| i.state != InstanceState::Stopped)
        .collect();
    let ready = ready(&s.instances, s.current_revision);
    if ready == s.replicas as usize && alive.len() == ready {
        return None;
    }
    Some(match s.current_revision {
        Some(n) => format!(
            "the fleet is not revision {n}'s {} ready instance(s): `rollout undo {}` returns it to \
             revision {n}, the last that completed; `rollout run --spec FILE` converges it to a spec",
            s.replicas, s.name
        ),
        None => format!(
            "no revision of {} completed yet: `rollout run --spec FILE` deploys one",
            s.name
        ),
    })
}

fn age(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// Run `rollout status`.
pub async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let client = cli.client();
    let services: Vec<ServiceStatus> = match &args.service {
        Some(name) => vec![client.get(&format!("/v1/services/{name}")).await?],
        None => client.get("/v1/services").await?,
    };
    if args.watch
        && let Some(active) = services.first().and_then(|s| s.active.clone())
    {
        let started = Started {
            rollout: Some(active.id),
            service: active.service.clone(),
            from_revision: active.from_revision,
            to_revision: active.to_revision,
            message: format!("following rollout {} of {}", active.id, active.service),
        };
        return super::deploy::follow(&client, &started, args.output).await;
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string(&services)?);
        return Ok(ExitCode::SUCCESS);
    }
    if services.is_empty() {
        println!("no services yet: deploy one with `rollout run --spec FILE`");
    }
    for s in &services {
        let current = s
            .current_revision
            .map_or("none".to_string(), |n| n.to_string());
        println!(
            "{}: revision {current}, {}/{} ready, {} instance(s), backend {}",
            s.name,
            ready(&s.instances, s.current_revision),
            s.replicas,
            s.instances.len(),
            s.backend
        );
        println!("  running: {}", running(&s.instances));
        if let Some(advice) = advice(s) {
            println!("  {advice}");
        }
        let h = &s.healing;
        if h.restarts > 0 || h.held_back > 0 {
            let wait = h.next_attempt_ms.saturating_sub(crate::store::unix_ms());
            let held = match h.held_back {
                0 => String::new(),
                n => format!(
                    ", crash loop: {n} replacement(s) held back, next in {:.1}s",
                    wait as f64 / 1e3
                ),
            };
            println!(
                "  restarts {}{held}{}",
                h.restarts,
                h.last_reason
                    .as_deref()
                    .map_or(String::new(), |r| format!("; last: {r}"))
            );
        }
        if let Some(addr) = &s.preview {
            println!("  preview http://{addr} (the revision being rolled out)");
        }
        if let Some(addr) = &s.front_door {
            println!("  front door http://{addr}; traffic over the last minute:");
            for t in &s.traffic {
                let weight = t
                    .weight
                    .map_or("by instances".to_string(), |w| format!("weight {w}"));
                println!(
                    "    {:<6} {weight:<14} {:>8} requests {:>6} errors  p50 {:.2} ms  p99 {:.2} ms",
                    t.revision,
                    t.stats.requests,
                    t.stats.errors,
                    t.stats.p50_us as f64 / 1e3,
                    t.stats.p99_us as f64 / 1e3
                );
            }
        }
        match (&s.active, &s.last) {
            (Some(a), _) => println!(
                "  rollout {} in progress{}: revision {} -> {}{}",
                a.id,
                if s.paused { " (PAUSED)" } else { "" },
                a.from_revision.map_or("none".into(), |n| n.to_string()),
                a.to_revision,
                s.progress
                    .as_deref()
                    .map_or(String::new(), |p| format!(", {p}"))
            ),
            (None, Some(l)) => println!(
                "  last rollout {}: revision {} {}{}",
                l.id,
                l.to_revision,
                l.state,
                if l.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.reason)
                }
            ),
            (None, None) => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `rollout ls`.
pub async fn ls(cli: &Cli, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let client = cli.client();
    let services: Vec<ServiceStatus> = match &args.service {
        Some(name) => vec![client.get(&format!("/v1/services/{name}")).await?],
        None => client.get("/v1/services").await?,
    };
    let instances: Vec<&Instance> = services.iter().flat_map(|s| &s.instances).collect();
    if args.output == Output::Json {
        println!("{}", serde_json::to_string(&instances)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<9} {:<10} {:>5}  ADDRESS",
        "INSTANCE", "REVISION", "STATE", "AGE"
    );
    for i in instances {
        println!(
            "{:<28} {:<9} {:<10} {:>5}  {}",
            i.id,
            i.revision,
            i.state.name(),
            age(i.age_ms),
            i.address.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `rollout logs`.
pub async fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/instances/{}/logs?lines={}", args.instance, args.lines);
    let lines: Vec<String> = cli.client().get(&path).await?;
    for line in lines {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `rollout history`.
pub async fn history(cli: &Cli, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    if args.events {
        let path = format!("/v1/services/{}/events", args.service);
        let events: Vec<crate::store::ServiceEvent> = cli.client().get(&path).await?;
        if args.output == Output::Json {
            println!("{}", serde_json::to_string(&events)?);
            return Ok(ExitCode::SUCCESS);
        }
        let now = crate::store::unix_ms();
        println!("{:>6} {:<8} WHAT", "AGO", "KIND");
        for e in &events {
            println!(
                "{:>6} {:<8} {}",
                age(now.saturating_sub(e.at_ms)),
                e.kind,
                e.text
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut path = format!("/v1/services/{}/history", args.service);
    if let Some(n) = args.revision {
        path.push_str(&format!("?revision={n}"));
    }
    let entries: Vec<HistoryEntry> = cli.client().get(&path).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<9} {:<12} CAUSE", "REVISION", "ROLLOUT");
    for e in &entries {
        let mark = if e.current { "*" } else { " " };
        let outcome = e.outcome.as_deref().unwrap_or("-");
        println!("{mark}{:<8} {outcome:<12} {}", e.number, e.cause);
        // The default cause is the diff itself: print it once.
        if e.cause != e.diff.join("; ") {
            for line in &e.diff {
                println!("{:22}{line}", "");
            }
        }
        if let Some(spec) = &e.spec {
            println!();
            for line in spec.lines() {
                println!("  {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `rollout pause|resume|abort|promote`. With the local agent down, a
/// pause, resume or abort of a rollout it was running is recorded in its
/// state, and applies when the agent starts again and resumes the rollout.
pub async fn control(cli: &Cli, args: &ControlArgs, action: Action) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/services/{}/{}", args.service, action.name());
    let answer: ControlAnswer = match cli.client().post(&path, &serde_json::json!({})).await {
        Err(e @ ClientError::NotRunning { .. }) if cli.agent.is_none() => {
            let message = record_while_down(&cli.home(), &args.service, action)
                .map_err(|why| anyhow::anyhow!("{e}; nothing was recorded: {why}"))?;
            println!("{message}");
            return Ok(ExitCode::SUCCESS);
        }
        answer => answer?,
    };
    println!("{}", answer.message);
    Ok(ExitCode::SUCCESS)
}

/// Record `action` for the rollout of `service` the agent at `home` was
/// running when it stopped; what to tell the operator, or why not.
fn record_while_down(home: &Path, service: &str, action: Action) -> Result<String, String> {
    if action == Action::Promote {
        return Err("a promote needs the agent running".into());
    }
    let db = home.join("state.db");
    if !db.exists() {
        return Err(format!("{} has no state", home.display()));
    }
    let store = crate::store::Store::open(&db).map_err(|e| e.to_string())?;
    let rollouts = store.unfinished_rollouts().map_err(|e| e.to_string())?;
    let Some(row) = rollouts.iter().find(|r| r.service == service) else {
        return Err(format!("no rollout of {service} was in progress"));
    };
    store
        .add_command(row.id, action.name())
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "the agent is not running: {} recorded for rollout {} of {service}; it applies when the agent starts again (`rollout serve`) and resumes the rollout",
        action.name(),
        row.id
    ))
}
