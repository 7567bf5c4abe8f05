//! `rollout bench`: performance figures. `runtime` and `rollout` are
//! measured here, with the library alone; `proxy` and `swarm` drive nginx
//! and Docker Swarm, and are the `rollout-bench` binary's (the `benches/`
//! crate), run from next to this executable as git runs `git-foo`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::bench_args::{ProxyArgs, SwarmArgs};
use super::{Cli, LimitArgs, Output};
use crate::bench;
use crate::executor::{DurableRuntime, PolicyRuntime};

/// The binary of the benchmarks that drive other systems.
const BENCH_BINARY: &str = "rollout-bench";

/// Arguments of `rollout bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Policy runtime: compile, load, instantiate, host call, 10,000-instance simulation.
    Runtime(RuntimeArgs),
    /// A rolling update of real demo-app processes against its physical limit.
    Rollout(RolloutArgs),
    /// How soon a restarted agent resumes the rollout it was killed during.
    Resume(ResumeArgs),
    /// The front door against nginx (wrk load), and failed requests during
    /// a rollout (run by `rollout-bench proxy`).
    Proxy(ProxyArgs),
    /// rollout's swarm backend against Docker Swarm's rolling update and
    /// rollback (run by `rollout-bench swarm`).
    Swarm(SwarmArgs),
}

/// Arguments of `rollout bench runtime`.
#[derive(Debug, clap::Args)]
struct RuntimeArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Arguments of `rollout bench resume`.
#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Instances of the service.
    #[arg(long, default_value_t = 4)]
    replicas: u32,
    /// Restarts measured; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// The demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
}

/// Arguments of `rollout bench rollout`.
#[derive(Debug, clap::Args)]
struct RolloutArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Instances to replace.
    #[arg(long, default_value_t = 10)]
    replicas: u32,
    /// How long each instance takes to become ready, in ms.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    ready_delay_ms: u64,
    /// The demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Run `rollout bench`.
pub async fn run(_cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        What::Runtime(args) => {
            let runtime = PolicyRuntime::new(args.limits.limits(), None)?;
            let f = bench::runtime::runtime_figures(&runtime).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => {
                    println!("policy runtime (rolling policy, wasmtime, pooling allocator)");
                    println!("  compile                    {:>10.1} ms", f.compile_ms);
                    println!(
                        "  load precompiled           {:>10.3} ms",
                        f.load_precompiled_ms
                    );
                    println!("  instantiate (median)       {:>10.1} us", f.instantiate_us);
                    println!("  host call (median)         {:>10.0} ns", f.host_call_ns);
                    println!(
                        "  sim rollout, 10,000 inst.  {:>10.1} ms  ({})",
                        f.sim_rollout_10000_ms, f.sim_rollout_10000_outcome
                    );
                }
            }
        }
        What::Rollout(args) => {
            let runtime = DurableRuntime::new(args.limits.limits(), None)?;
            let app = bench::rollout::demo_app(args.app.as_deref())?;
            let f =
                bench::rollout::rollout_figures(runtime, &app, args.replicas, args.ready_delay_ms)
                    .await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => {
                    println!(
                        "rolling update of {} demo-app processes, one at a time, {} ms readiness delay",
                        f.replicas, f.ready_delay_ms
                    );
                    println!(
                        "  process start (median)     {:>10.1} ms",
                        f.process_start_ms
                    );
                    println!(
                        "  physical limit             {:>10.1} ms",
                        f.physical_limit_ms
                    );
                    println!(
                        "  wall time                  {:>10.1} ms  ({})",
                        f.wall_ms, f.outcome
                    );
                    println!("  ratio                      {:>10.4}", f.ratio);
                    println!(
                        "  overhead per batch         {:>10.1} ms",
                        f.overhead_per_batch_ms
                    );
                }
            }
        }
        What::Resume(args) => {
            anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
            let app = bench::rollout::demo_app(args.app.as_deref())?;
            let (replicas, rounds) = (args.replicas, args.rounds);
            let f = tokio::task::spawn_blocking(move || {
                bench::resume::resume_figures(&app, replicas, rounds)
            })
            .await??;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => {
                    println!(
                        "agent restart during a rolling update of {} demo-app instances, medians of {} rounds",
                        f.replicas, f.rounds
                    );
                    println!("  agent start to answering   {:>10.1} ms", f.agent_up_ms);
                    println!("  agent start to resumed     {:>10.1} ms", f.resumed_ms);
                    println!("  calls replayed             {:>10}", f.calls_replayed);
                }
            }
        }
        What::Proxy(_) => return Err(delegate("proxy")),
        What::Swarm(_) => return Err(delegate("swarm")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `rollout-bench what ARGS` in place of this process, ARGS being this
/// command line's words after `what` (checked by clap already): the error
/// when it cannot run.
fn delegate(what: &str) -> anyhow::Error {
    let words: Vec<OsString> = std::env::args_os().collect();
    let bench = words.iter().position(|w| w == "bench");
    let at = bench.and_then(|b| words[b..].iter().position(|w| w == what).map(|i| b + i));
    let args = at.map_or(&[][..], |at| &words[at + 1..]);
    let exe = match std::env::current_exe().context("cannot find this executable") {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    let binary = exe.with_file_name(BENCH_BINARY);
    if !binary.is_file() {
        return anyhow::anyhow!(
            "`rollout bench {what}` runs {}, which is not built: build it with \
             `cargo build --release -p rollout-bench` (`cargo build -p rollout-bench` \
             for a debug build of rollout), or `cargo build --release`, which builds both",
            binary.display()
        );
    }
    let failed = std::process::Command::new(&binary)
        .arg(what)
        .args(args)
        .exec();
    anyhow::Error::new(failed).context(format!("cannot run {}", binary.display()))
}
