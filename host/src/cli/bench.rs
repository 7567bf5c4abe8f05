//! `rollout bench`: performance figures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

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
    /// `rollout`, `swarm`: instances to replace.
    #[arg(long, default_value_t = 10)]
    replicas: u32,
    /// `rollout`: how long each instance takes to become ready, in ms.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    ready_delay_ms: u64,
    /// `rollout`, `proxy`: the demo-app binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    app: Option<PathBuf>,
    /// `proxy`: seconds of load per measurement.
    #[arg(long, default_value_t = 4)]
    seconds: u32,
    /// `proxy`: concurrent connections of the load generator (wrk).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// `proxy`: rounds of runs, the proxy and nginx in turn (the other
    /// order each round); medians are reported.
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// `swarm`: the image deployed first.
    #[arg(long, default_value = "rollout-bench-demo:v1", value_name = "IMAGE")]
    image_v1: String,
    /// `swarm`: the image rolled out.
    #[arg(long, default_value = "rollout-bench-demo:v2", value_name = "IMAGE")]
    image_v2: String,
    /// `swarm`: an image that fails its health check once `UNHEALTHY_AFTER_MS` has passed (rolled back).
    #[arg(long, default_value = "rollout-bench-demo:bad", value_name = "IMAGE")]
    bad_image: String,
    /// `swarm`: health check interval, on both sides.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    health_interval_ms: u64,
    /// `swarm`: Swarm's update and rollback monitor period (Swarm's default: 5000).
    #[arg(long, default_value_t = bench::swarm::SWARM_DEFAULT_MONITOR_MS, value_name = "MS")]
    swarm_monitor_ms: u64,
    /// `swarm`: run Swarm as `docker service update --update-parallelism 1
    /// --update-failure-action rollback` leaves it (its defaults for the
    /// rest: stop-first, 3 health retries, no init), not tuned to equal
    /// safety.
    #[arg(long)]
    swarm_defaults: bool,
    /// `swarm`: measure one side only.
    #[arg(long, value_enum, value_name = "SIDE")]
    only: Option<Side>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// A side of `rollout bench swarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Side {
    /// Docker Swarm's own rolling update.
    Swarm,
    /// rollout on its swarm backend.
    Rollout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Policy runtime: compile, load, instantiate, host call, 10,000-instance simulation.
    Runtime,
    /// A rolling update of real demo-app processes against its physical limit.
    Rollout,
    /// The front door against nginx (wrk load), and failed requests during a rollout.
    Proxy,
    /// rollout's swarm backend against Docker Swarm's rolling update and rollback.
    Swarm,
}

/// `--app`, else the demo-app next to this executable.
fn demo_app(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    match &args.app {
        // The bench's specs are read from no file: a relative path would
        // be taken from `/`.
        Some(app) => std::path::absolute(app).with_context(|| format!("--app {}", app.display())),
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
            let load = bench::proxy::Load {
                seconds: args.seconds,
                connections: args.connections,
                rounds: args.rounds,
            };
            let f = bench::proxy::proxy_figures(runtime, &tools, load).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => {
                    println!(
                        "front door vs nginx, 2 demo-app instances, wrk -t2 -c{}, \
                         medians of {} interleaved rounds",
                        f.connections, f.rounds
                    );
                    println!("  requests/s  rollout proxy {:>10.0}", f.rps);
                    println!("  requests/s  nginx         {:>10.0}", f.nginx_rps);
                    println!(
                        "  throughput ratio          {:>10.3}  (rounds {:.3}-{:.3})",
                        f.throughput_ratio_vs_nginx, f.throughput_ratio_min, f.throughput_ratio_max
                    );
                    println!(
                        "  CPU per request           {:>10.1} us  (nginx {:.1} us, ratio {:.3})",
                        f.cpu_us_per_request,
                        f.nginx_cpu_us_per_request,
                        f.nginx_cpu_us_per_request / f.cpu_us_per_request
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
        What::Swarm => {
            let options = bench::swarm::SwarmOptions {
                replicas: args.replicas,
                image_v1: args.image_v1.clone(),
                image_v2: args.image_v2.clone(),
                bad_image: args.bad_image.clone(),
                health_interval_ms: args.health_interval_ms,
                swarm_monitor_ms: args.swarm_monitor_ms,
                swarm_defaults: args.swarm_defaults,
                only: args.only.map(|side| match side {
                    Side::Swarm => bench::swarm::Side::Swarm,
                    Side::Rollout => bench::swarm::Side::Rollout,
                }),
            };
            let f = bench::swarm::swarm_figures(runtime, &options).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => print_swarm(&f),
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

/// A table cell of milliseconds, `-` when not measured.
fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0} ms"))
}

/// A table cell of a ratio, `-` when not measured.
fn times(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}x"))
}

/// The human table of `rollout bench swarm`.
fn print_swarm(f: &bench::swarm::SwarmFigures) {
    println!(
        "{} replicas on {} node(s), health check every {} ms (rollout's start-period {} ms), one at a time (max-surge 1, max-unavailable 0); Swarm monitor {} ms{}",
        f.replicas,
        f.nodes,
        f.health_interval_ms,
        f.start_period_ms,
        f.swarm_monitor_ms,
        match f.swarm_defaults {
            true => "; Swarm's defaults beyond parallelism 1 and failure action rollback",
            false => "; Swarm tuned to equal safety",
        }
    );
    println!(
        "  {:<38} {:>12} {:>12} {:>9}",
        "", "rollout", "Swarm", "speedup"
    );
    println!(
        "  {:<38} {:>12} {:>12} {:>9}",
        "update v1 -> v2",
        ms(f.rollout_ms),
        ms(f.swarm_ms),
        times(f.speedup)
    );
    println!(
        "  {:<38} {:>12} {:>12}",
        "  every instance on v2",
        ms(f.rollout_ms),
        ms(f.swarm_all_running_ms)
    );
    print_bad("bad image, never healthy", &f.never_healthy);
    print_bad(
        &format!("bad image, unhealthy after {} ms", f.unhealthy_after_ms),
        &f.breaks,
    );
}

/// The rows of one bad image in [`print_swarm`]'s table.
fn print_bad(what: &str, f: &bench::swarm::BadFigures) {
    println!(
        "  {:<38} {:>12} {:>12} {:>9}",
        what,
        ms(f.rollback_ms),
        ms(f.swarm_rollback_ms),
        times(f.rollback_speedup)
    );
    println!(
        "  {:<38} {:>12} {:>12}",
        "  first failed check to rolled back",
        ms(f.rollback_after_first_failure_ms),
        ms(f.swarm_rollback_after_first_failure_ms)
    );
    if let Some(why) = &f.rollback_reason {
        println!("    rollout rolled back: {why}");
    }
    if let Some(why) = &f.swarm_rollback_message {
        println!("    Swarm: {why}");
    }
}
