//! `rollout-bench`: the benchmarks that drive other systems, kept out of
//! the shipped `rollout` library. `rollout bench proxy` and `rollout bench
//! swarm` run this binary when it sits next to `rollout` (cargo builds
//! both into the same directory), passing their arguments through.
//!
//! - [`proxy`]: the front door against nginx under wrk, and a rollout
//!   under load.
//! - [`swarm`]: rollout on its `swarm` backend against Docker Swarm's own
//!   rolling update and rollback.
//!
//! `rollout bench runtime` and `rollout bench rollout` need nothing but
//! the library and stay in `rollout` itself.

#![deny(missing_docs)]

mod proxy;
mod swarm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollout::cli::Output;
use rollout::cli::bench_args::{ProxyArgs, SwarmArgs};
use rollout::executor::DurableRuntime;

/// Benchmarks of rollout against nginx and Docker Swarm (also run as
/// `rollout bench proxy|swarm`).
#[derive(Debug, Parser)]
#[command(name = "rollout-bench", version)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// The front door against nginx (wrk load), and failed requests during a rollout.
    Proxy(ProxyArgs),
    /// rollout's swarm backend against Docker Swarm's rolling update and rollback.
    Swarm(SwarmArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match tokio {
        Ok(tokio) => tokio.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run the benchmark `cli` names and print its figures.
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.what {
        What::Proxy(args) => {
            let runtime = DurableRuntime::new(args.limits.limits(), None)?;
            let tools = proxy::Tools {
                wrk: proxy::which("wrk")?,
                nginx: proxy::which("nginx")?,
                app: rollout::bench::rollout::demo_app(args.app.as_deref())?,
            };
            let load = proxy::Load {
                seconds: args.seconds,
                connections: args.connections,
                rounds: args.rounds,
            };
            let f = proxy::proxy_figures(runtime, &tools, load).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => print_proxy(&f),
            }
        }
        What::Swarm(args) => {
            let runtime = DurableRuntime::new(args.limits.limits(), None)?;
            let options = swarm::SwarmOptions {
                replicas: args.replicas,
                image_v1: args.image_v1,
                image_v2: args.image_v2,
                bad_image: args.bad_image,
                health_interval_ms: args.health_interval_ms,
                swarm_monitor_ms: args.swarm_monitor_ms,
                swarm_defaults: args.swarm_defaults,
                only: args.only,
            };
            let f = swarm::swarm_figures(runtime, &options).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&f)?),
                Output::Human => print_swarm(&f),
            }
        }
    }
    Ok(())
}

/// The human table of `rollout bench proxy`.
fn print_proxy(f: &proxy::ProxyFigures) {
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

/// A table cell of milliseconds, `-` when not measured.
fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0} ms"))
}

/// A table cell of a ratio, `-` when not measured.
fn times(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}x"))
}

/// The human table of `rollout bench swarm`.
fn print_swarm(f: &swarm::SwarmFigures) {
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
fn print_bad(what: &str, f: &swarm::BadFigures) {
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
