//! The `rollout` command line: argument parsing and output.

mod bench;
pub mod bench_args;
mod demo;
mod deploy;
mod inspect;
mod serve;
mod service;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::executor::operator::Action;
use crate::runtime::{Limits, PolicyHost, Runtime};

/// Deployments whose strategies are sandboxed WebAssembly policies.
///
/// A policy (a Wasm component built against rollout:policy@0.1.0) decides
/// batch order, health verdicts and when to roll back; the host starts and
/// stops instances, probes them and enforces guardrails no policy can break.
#[derive(Debug, Parser)]
#[command(name = "rollout", version, propagate_version = true)]
pub struct Cli {
    /// State and cache directory [default: $ROLLOUT_HOME, else ~/.rollout].
    #[arg(long, global = true, env = "ROLLOUT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Talk to an agent over TCP at ADDR (with the token in $ROLLOUT_TOKEN
    /// or HOME/agent.token) instead of its Unix socket in HOME.
    #[arg(long, global = true, env = "ROLLOUT_AGENT", value_name = "ADDR")]
    agent: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a policy against a simulated fleet on a virtual clock and check
    /// the scenario's assertions (exit 0 all hold, 1 one failed, 2 bad input).
    Test(test::TestArgs),
    /// Measure and print performance figures.
    Bench(bench::BenchArgs),
    /// List the built-in policies.
    Policies,
    /// Deploy demo-app v1, roll to v2, then to a v3 that logs [ERROR] and is
    /// rolled back automatically, with an agent in a temporary home.
    Demo(demo::DemoArgs),
    /// Run the agent: it owns the services, their instances and rollouts
    /// (state in HOME/state.db, control socket HOME/agent.sock).
    Serve(serve::ServeArgs),
    /// Record a spec as a new revision and roll it out, following it to the
    /// end (exit 0 completed, 2 rolled back, 3 failed, 1 error before any change).
    Run(deploy::RunArgs),
    /// Services, their revisions and the rollout in progress.
    Status(inspect::StatusArgs),
    /// Instances with revision, state, age and address.
    Ls(inspect::LsArgs),
    /// The last lines an instance logged.
    Logs(inspect::LogsArgs),
    /// Numbered revisions of a service with their cause and spec diff.
    History(inspect::HistoryArgs),
    /// Roll back to an earlier revision (spec and config), through the policy.
    Undo(deploy::UndoArgs),
    /// Keep N instances of the serving revision: drain extra ones or start
    /// new ones, with no new revision (as `kubectl scale`).
    Scale(service::ScaleArgs),
    /// Roll the serving spec out again as a new revision, through its
    /// policy, replacing every instance (as `kubectl rollout restart`).
    Restart(service::RestartArgs),
    /// Drain and stop every instance of a service, close its front door and
    /// forget it (its history stays unless --purge).
    Rm(service::RmArgs),
    /// Hold the rollout in progress at its next step.
    Pause(inspect::ControlArgs),
    /// Release a paused rollout.
    Resume(inspect::ControlArgs),
    /// Stop the rollout in progress and roll back.
    Abort(inspect::ControlArgs),
    /// Skip the remaining steps of the rollout in progress.
    Promote(inspect::ControlArgs),
    /// A front door in a process of its own, started by the agent (which
    /// it outlives) and told what to serve on its control socket.
    #[command(hide = true)]
    Door(serve::DoorArgs),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Human,
    /// One JSON object, for machines.
    Json,
}

/// Sandbox limits a command can set.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// CPU a policy may use between two host calls, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    policy_cpu_ms: u64,
    /// Memory a policy may use, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    policy_memory_mib: usize,
}

impl LimitArgs {
    /// The sandbox limits these arguments set.
    pub fn limits(&self) -> Limits {
        Limits {
            cpu_per_call: std::time::Duration::from_millis(self.policy_cpu_ms),
            memory_bytes: self.policy_memory_mib << 20,
            ..Limits::default()
        }
    }
}

impl Cli {
    /// The state directory.
    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".rollout")
        })
    }

    /// A client of the agent (TCP with `--agent`, else the socket in HOME).
    fn client(&self) -> crate::api::client::Client {
        use crate::api::{self, client};
        let home = self.home();
        let home_flag = match &self.home {
            Some(h) => format!(" --home {}", h.display()),
            None => String::new(),
        };
        let endpoint = match &self.agent {
            Some(addr) => client::Endpoint::Tcp {
                addr: addr.clone(),
                token: std::env::var("ROLLOUT_TOKEN")
                    .ok()
                    .or_else(|| std::fs::read_to_string(api::token_path(&home)).ok())
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            },
            None => client::Endpoint::Unix(api::socket_path(&home)),
        };
        client::Client::new(endpoint, home_flag)
    }

    /// A runtime caching compiled policies under the home directory.
    fn runtime<H: PolicyHost>(&self, limits: Limits) -> anyhow::Result<Runtime<H>> {
        let cache = self.home().join("cache").join("policies");
        Ok(Runtime::new(limits, Some(cache))?)
    }
}

/// Parse `k=v`.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

/// Run the command line; the exit code follows the conventions in the README.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = tokio.block_on(async {
        match &cli.command {
            Command::Test(args) => test::run(&cli, args).await,
            Command::Bench(args) => bench::run(&cli, args).await,
            Command::Policies => {
                for (name, about) in crate::runtime::BUILTIN {
                    println!("{name:<10} {about}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Demo(args) => demo::run(&cli, args).await,
            Command::Serve(args) => serve::run(&cli, args).await,
            Command::Run(args) => deploy::run(&cli, args).await,
            Command::Undo(args) => deploy::undo(&cli, args).await,
            Command::Scale(args) => service::scale(&cli, args).await,
            Command::Restart(args) => service::restart(&cli, args).await,
            Command::Rm(args) => service::rm(&cli, args).await,
            Command::Status(args) => inspect::status(&cli, args).await,
            Command::Ls(args) => inspect::ls(&cli, args).await,
            Command::Logs(args) => inspect::logs(&cli, args).await,
            Command::History(args) => inspect::history(&cli, args).await,
            Command::Pause(args) => inspect::control(&cli, args, Action::Pause).await,
            Command::Resume(args) => inspect::control(&cli, args, Action::Resume).await,
            Command::Abort(args) => inspect::control(&cli, args, Action::Abort).await,
            Command::Promote(args) => inspect::control(&cli, args, Action::Promote).await,
            Command::Door(args) => serve::door(args).await,
        }
    });
    // `rollout test` reports bad input as 2 (1 means an assertion failed);
    // elsewhere 1 is "error before any change".
    let error_code = match cli.command {
        Command::Test(_) => 2,
        _ => 1,
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(error_code)
    })
}
