//! `rollout bench`: performance figures.

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
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Policy runtime: compile, load, instantiate, host call, 10,000-instance simulation.
    Runtime,
}

/// Run `rollout bench`.
pub async fn run(_cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Runtime => {
            let runtime = Runtime::new(args.limits.limits(), None)?;
            let f = bench::runtime_figures(&runtime).await?;
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
    }
    Ok(ExitCode::SUCCESS)
}
