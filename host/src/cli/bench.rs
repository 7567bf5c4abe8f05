//! `rollout bench`: performance figures.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Cli, LimitArgs, Output};
use crate::bench;
use crate::runtime::Runtime;

/// Arguments of `rollout bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: What,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// `rollout`: instances to replace.
    #[arg(long, default_value_t = 10)]
    replicas: u32,
    /// `rollout`: how long each instance takes to become ready, in ms.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    ready_delay_ms: u64,
    /// `rollout`: the demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Policy runtime: compile, load, instantiate, host call, 10,000-instance simulation.
    Runtime,
    /// A rolling update of real demo-app processes against its physical limit.
    Rollout,
}

/// Run `rollout bench`.
pub async fn run(_cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(args.limits.limits(), None)?;
    match args.what {
        What::Runtime => {
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
        What::Rollout => {
            let app = match &args.app {
                Some(app) => app.clone(),
                None => bench::rollout::sibling_demo_app()?,
            };
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
    }
    Ok(ExitCode::SUCCESS)
}
