//! `rollout run` and `rollout undo`: start a rollout on the agent and follow
//! it to its end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use serde_json::json;

use super::{Cli, Output, key_value};
use crate::api::client::{Client, ClientError};
use crate::api::types::{Events, PolicyRef, RunRequest, Started, UndoRequest};
use crate::runtime::{PolicySource, read_component};
use crate::spec::ServiceSpec;
use crate::store::JournalRow;

/// How a rollout's policy and params are chosen on the command line.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Built-in policy name or path to a .wasm component [default: the spec's].
    #[arg(long, value_name = "NAME|PATH")]
    policy: Option<String>,
    /// Policy parameter, overriding the spec's; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    params: Vec<(String, String)>,
    /// Output: plain lines (a progress bar on a terminal), or one JSON object at the end.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Arguments of `rollout run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The service spec (TOML).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Override a spec value by its dotted path, e.g. revision.env.VERSION=v2; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    sets: Vec<(String, String)>,
    /// Why this revision exists (shown by `rollout history`) [default: what changed].
    #[arg(long, value_name = "TEXT")]
    cause: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Arguments of `rollout undo`.
#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    /// The service.
    service: String,
    /// The revision to return to [default: the one before the current].
    #[arg(long, value_name = "N")]
    to_revision: Option<u32>,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// What `--policy` names, read so the agent needs no access to the file.
fn policy_ref(arg: &str) -> anyhow::Result<PolicyRef> {
    Ok(match PolicySource::parse(arg)? {
        PolicySource::Path(path) => {
            let bytes = read_component(&path).map_err(|why| {
                anyhow::anyhow!("policy {}: {why}; nothing was changed", path.display())
            })?;
            PolicyRef::Wasm {
                name: path.display().to_string(),
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            }
        }
        source => PolicyRef::Builtin {
            name: source.name(),
        },
    })
}

/// Run `rollout run`.
pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let spec = ServiceSpec::load_with(&args.spec, &args.sets)
        .map_err(|e| anyhow::anyhow!("{e}\nnothing was changed"))?;
    let policy = policy_ref(args.policy.policy.as_deref().unwrap_or(&spec.policy.name))?;
    let request = RunRequest {
        spec: spec.to_toml(),
        origin: args.spec.display().to_string(),
        policy: Some(policy),
        params: args.policy.params.clone(),
        cause: args.cause.clone(),
    };
    let client = cli.client();
    let started: Started = client.post("/v1/rollouts", &request).await?;
    follow(&client, &started, args.policy.output).await
}

/// Run `rollout undo`.
pub async fn undo(cli: &Cli, args: &UndoArgs) -> anyhow::Result<ExitCode> {
    let request = UndoRequest {
        to_revision: args.to_revision,
        policy: args.policy.policy.as_deref().map(policy_ref).transpose()?,
        params: args.policy.params.clone(),
    };
    let client = cli.client();
    let path = format!("/v1/services/{}/undo", args.service);
    let started: Started = client.post(&path, &request).await?;
    follow(&client, &started, args.policy.output).await
}

/// Move the bar to a progress entry: `step 2/4: message`.
fn show_step(bar: &indicatif::ProgressBar, text: &str) {
    let Some((head, message)) = text.split_once(": ") else {
        return bar.set_message(text.to_string());
    };
    let numbers = head.strip_prefix("step ").and_then(|n| n.split_once('/'));
    if let Some((step, steps)) = numbers
        && let (Ok(step), Ok(steps)) = (step.parse(), steps.parse())
    {
        bar.set_length(steps);
        bar.set_position(step);
    }
    bar.set_message(message.to_string());
}

/// Exit code of a rollout that did not end while followed: the agent
/// stopped (SIGTERM) or died under it, after the fleet may have changed.
pub const INTERRUPTED: u8 = 4;

/// What to do after an interrupted rollout.
fn follow_up(service: &str) -> String {
    format!(
        "the fleet may have changed: start the agent again if it is down (`rollout serve`), \
         then `rollout status {service}` shows which revisions run; `rollout run` of the spec \
         converges the service to it, `rollout undo {service}` returns to the last revision that completed"
    )
}

/// The agent stopped answering while rollout `id` was followed.
fn lost(id: i64, service: &str, error: &ClientError, human: bool) -> ExitCode {
    let message = format!("rollout {id} interrupted: the agent stopped answering ({error})");
    match human {
        true => eprintln!("{message}\n{}", follow_up(service)),
        false => println!(
            "{}",
            json!({ "rollout": id, "service": service, "outcome": "interrupted",
                "reason": message, "next": follow_up(service) })
        ),
    }
    ExitCode::from(INTERRUPTED)
}

/// Print a rollout's journal as it happens until it ends; the exit code
/// is its outcome (0 completed, 2 rolled back, 3 failed, 4 interrupted).
pub async fn follow(
    client: &Client,
    started: &Started,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let human = output == Output::Human;
    if human {
        println!("{}", started.message);
    }
    let Some(id) = started.rollout else {
        if !human {
            println!(
                "{}",
                json!({ "service": started.service, "outcome": "unchanged",
                "revision": started.to_revision, "message": started.message })
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let bar = (human && std::io::stdout().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} step {pos}/{len} {msg}",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let mut journal: Vec<JournalRow> = Vec::new();
    let rollout = loop {
        let after = journal.last().map_or(0, |r| r.seq);
        let path = format!("/v1/rollouts/{id}/events?after={after}&wait_ms=1000");
        let Events { rollout, events } = match client.get(&path).await {
            Ok(events) => events,
            // The agent went away (or broke off) under the rollout.
            Err(e @ (ClientError::NotRunning { .. } | ClientError::Protocol(_))) => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Ok(lost(id, &started.service, &e, human));
            }
            Err(e) => return Err(e.into()),
        };
        for row in events {
            if human {
                let line = format!("  {}", row.entry);
                match &bar {
                    Some(bar) => {
                        bar.println(line);
                        if row.entry.kind == crate::journal::Kind::Progress {
                            show_step(bar, &row.entry.text);
                        }
                    }
                    None => println!("{line}"),
                }
            }
            journal.push(row);
        }
        if rollout.state != "running" {
            break rollout;
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let code = match rollout.state.as_str() {
        "completed" => 0,
        "rolled-back" => 2,
        "interrupted" => INTERRUPTED,
        _ => 3,
    };
    if human {
        let took = rollout.ended_ms.unwrap_or(rollout.started_ms) - rollout.started_ms;
        match code {
            0 => println!(
                "rollout {id} completed in {:.1}s: revision {} serves {}",
                took as f64 / 1e3,
                rollout.to_revision,
                rollout.service
            ),
            2 => println!("rollout {id} rolled back: {}", rollout.reason),
            INTERRUPTED => println!(
                "rollout {id} interrupted: {}\n{}",
                rollout.reason,
                follow_up(&rollout.service)
            ),
            _ => println!(
                "rollout {id} failed: {}\nthe fleet is left for an operator: `rollout status {}`, `rollout undo {}`",
                rollout.reason, rollout.service, rollout.service
            ),
        }
    } else {
        println!(
            "{}",
            json!({
                "rollout": id,
                "service": rollout.service,
                "from_revision": rollout.from_revision,
                "to_revision": rollout.to_revision,
                "outcome": rollout.state,
                "reason": rollout.reason,
                "wall_ms": rollout.ended_ms.unwrap_or(rollout.started_ms) - rollout.started_ms,
                "journal": journal,
            })
        );
    }
    Ok(ExitCode::from(code))
}
