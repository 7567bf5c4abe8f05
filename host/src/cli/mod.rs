//! The `rollout` command line: argument parsing and output.

mod bench;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::runtime::{Limits, Runtime};

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
    fn limits(&self) -> Limits {
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

    /// A runtime caching compiled policies under the home directory.
    fn runtime(&self, limits: Limits) -> anyhow::Result<Runtime> {
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
