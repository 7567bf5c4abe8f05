//! `rollout demo`: the whole product in one command.
//!
//! An agent in a temporary home deploys `examples/demo-app` v1 (three real
//! processes), rolls to v2 with the rolling policy, then to a v3 that logs
//! `[ERROR]` and is rolled back on its own. It drives the agent through its
//! own control socket, as the CLI does, and stops everything at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{Cli, LimitArgs, Output, deploy};
use crate::agent::Agent;
use crate::api::client::{Client, Endpoint};
use crate::api::types::{RunRequest, ServiceStatus, Started};
use crate::api::{self, Listeners};
use crate::spec::ServiceSpec;

/// The documented example spec the demo deploys.
const EXAMPLE: &str = include_str!("../../../examples/demo.toml");

/// Arguments of `rollout demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
    /// Keep the agent's home (state database, logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// One step of the demo: the environment of the revision, what it shows,
/// and the outcome it must have.
struct Step {
    title: &'static str,
    env: &'static [(&'static str, &'static str)],
    expect: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        title: "1/3 deploy demo-app v1: three processes, started one at a time and health-checked",
        env: &[("VERSION", "v1")],
        expect: "completed",
    },
    Step {
        title: "2/3 roll to v2 with the rolling policy: one new instance, then one old one stopped",
        env: &[("VERSION", "v2")],
        expect: "completed",
    },
    Step {
        title: "3/3 roll to v3, which logs [ERROR] 500 ms after it starts: rolled back on its own",
        env: &[("VERSION", "v3"), ("ERROR_AFTER_MS", "500")],
        expect: "rolled-back",
    },
];

/// Run `rollout demo`.
pub async fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let app = match &args.app {
        Some(app) => app.clone(),
        None => crate::bench::rollout::sibling_demo_app()?,
    };
    let home = std::env::temp_dir().join(format!("rollout-demo-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let (listeners, _) = Listeners::bind(&home, None).await?;
    let (agent, _) = Agent::open(&home, cli.runtime(args.limits.limits())?).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listeners.serve(agent.clone(), async {
        let _ = stopped.await;
    }));
    println!("rollout demo: an agent serves {}", home.display());
    println!(
        "  watch it from another terminal: rollout --home {} status --watch demo\n",
        home.display()
    );
    let client = Client::new(Endpoint::Unix(api::socket_path(&home)), String::new());
    let result = steps(&client, &app).await;

    println!("\ncleaning up: stopping every instance and the agent");
    agent.stop_all().await?;
    let _ = stop.send(());
    let _ = server.await;
    if args.keep {
        println!(
            "kept {}: state.db (revisions, rollouts, journal) and services/demo/logs/",
            home.display()
        );
    } else {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("cannot remove {}", home.display()))?;
    }
    result
}

async fn steps(client: &Client, app: &Path) -> anyhow::Result<ExitCode> {
    for step in STEPS {
        println!("== {}", step.title);
        let mut sets = vec![("revision.command".to_string(), app.display().to_string())];
        for (k, v) in step.env {
            sets.push((format!("revision.env.{k}"), v.to_string()));
        }
        let spec = ServiceSpec::parse_with(EXAMPLE, "examples/demo.toml", Path::new("/"), &sets)?;
        let request = RunRequest {
            spec: spec.to_toml(),
            origin: "examples/demo.toml".into(),
            policy: None,
            params: Vec::new(),
            cause: Some(format!("demo: {}", step.env[0].1)),
        };
        let started: Started = client.post("/v1/rollouts", &request).await?;
        let code = deploy::follow(client, &started, Output::Human).await?;
        let want = ExitCode::from(match step.expect {
            "completed" => 0,
            _ => 2,
        });
        let status: ServiceStatus = client.get("/v1/services/demo").await?;
        println!("   what each instance answers on GET /:");
        for i in &status.instances {
            let addr = i.address.as_deref().unwrap_or_default();
            let body = fetch(addr).await.unwrap_or_else(|e| format!("error: {e}"));
            println!("     {} ({}) at {addr}: {}", i.id, i.revision, body.trim());
        }
        println!();
        if code != want {
            println!("the demo expected this rollout to end {}", step.expect);
            return Ok(ExitCode::from(1));
        }
    }
    println!("where to look next (run the demo with --keep to keep its home):");
    println!("  rollout --home HOME history demo   numbered revisions, their cause and spec diff");
    println!("  HOME/services/demo/logs/           what each instance logged");
    println!("  docs/policies.md                   write a policy, test it with `rollout test`");
    Ok(ExitCode::SUCCESS)
}

/// The body of `GET /` from `addr` (HTTP/1.0, so the server closes).
async fn fetch(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}
