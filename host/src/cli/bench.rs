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
    /// `rollout`, `proxy`: the demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
    /// `proxy`: seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// `proxy`: concurrent connections of the load generator (wrk).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Policy runtime: compile, load, instantiate, host call, 10,000-instance simulation.
    Runtime,
    /// A rolling update of real demo-app processes against its physical limit.
    Rollout,
    /// The front door against nginx (wrk load), and failed requests during a rollout.
    Proxy,
}

/// `--app`, else the demo-app next to this executable.
fn demo_app(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    match &args.app {
        Some(app) => Ok(app.clone()),
        None => bench::rollout::sibling_demo_app(),
    }
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
        What::Proxy => {
            let tools = bench::proxy::Tools {
                wrk: bench::proxy::which("wrk")?,
                nginx: bench::proxy::which("nginx")?,
                app: demo_app(args)?,
            };
            let f = bench::proxy::proxy_figures(runtime, &tools, args.seconds, args.connections)
                .await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => {
                    println!(
                        "front door vs nginx, 2 demo-app instances, wrk -t2 -c{}",
                        f.connections
                    );
                    println!("  requests/s  rollout proxy {:>10.0}", f.rps);
                    println!("  requests/s  nginx         {:>10.0}", f.nginx_rps);
                    println!(
                        "  throughput ratio          {:>10.3}",
                        f.throughput_ratio_vs_nginx
                    );
                    println!(
                        "  p99 at full load          {:>10.3} ms  (nginx {:.3} ms)",
                        f.p99_saturated_ms, f.nginx_p99_saturated_ms
                    );
                    println!("  p99 light load, direct    {:>10.3} ms", f.direct_p99_ms);
                    println!(
                        "  p99 light load, proxy     {:>10.3} ms  (+{:.3} ms)",
                        f.p99_ms, f.p99_added_ms
                    );
                    println!(
                        "  p99 light load, nginx     {:>10.3} ms  (+{:.3} ms)",
                        f.nginx_p99_ms, f.nginx_p99_added_ms
                    );
                    println!(
                        "  during a rolling update   {:>10} requests, {} failed ({})",
                        f.total_requests, f.failed_requests, f.rollout_outcome
                    );
                }
            }
        }
        What::Rollout => {
            let app = demo_app(args)?;
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
