//! `rollout test`: a policy against a scenario, on virtual time.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{Cli, LimitArgs, Output, key_value};
use crate::runtime::PolicySource;
use crate::scenario::{self, Report, Scenario};

/// Arguments of `rollout test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Built-in policy name (see `rollout policies`) or path to a .wasm component.
    #[arg(long, value_name = "NAME|PATH")]
    policy: String,
    /// Scenario file (TOML): fleet, behaviour, commands, assertions.
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Policy parameter, overriding the scenario's [params]; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    params: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Run `rollout test`.
pub async fn run(cli: &Cli, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let runtime = cli.runtime(args.limits.limits())?;
    let source = PolicySource::parse(&args.policy)?;
    let policy = runtime
        .load(&source)
        .context("the policy was not run; no instance was touched")?;
    let report = scenario::simulate(&runtime, &policy, &scenario, &args.params).await;
    match args.output {
        Output::Human => print_human(&args.scenario, &scenario, &policy.name, &report),
        Output::Json => print_json(&args.scenario, &scenario, &policy.name, &report),
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(path: &std::path::Path, scenario: &Scenario, policy: &str, report: &Report) {
    println!("scenario {} with policy {policy}", path.display());
    if !scenario.description.is_empty() {
        println!("  {}", scenario.description);
    }
    for entry in &report.journal {
        println!("  {entry}");
    }
    let seen = &report.observed;
    println!(
        "\n{}: {} virtual in {:.1} ms; at most {} instances, at least {} ready",
        report.outcome,
        format_ms(seen.duration_ms),
        report.wall.as_secs_f64() * 1_000.0,
        seen.max_instances,
        seen.min_ready
    );
    for check in &report.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        println!(
            "  {mark} {}: expected {}, got {}",
            check.name, check.expected, check.actual
        );
    }
    let failed = report.checks.iter().filter(|c| !c.passed).count();
    match failed {
        0 => println!("all {} assertion(s) hold", report.checks.len()),
        n => println!("{n} of {} assertion(s) failed", report.checks.len()),
    }
}

fn print_json(path: &std::path::Path, scenario: &Scenario, policy: &str, report: &Report) {
    let seen = &report.observed;
    let value = json!({
        "scenario": path.display().to_string(),
        "description": scenario.description,
        "policy": policy,
        "outcome": seen.outcome,
        "reason": seen.reason,
        "step": seen.step,
        "virtual_ms": seen.duration_ms,
        "wall_ms": report.wall.as_secs_f64() * 1_000.0,
        "max_instances": seen.max_instances,
        "min_ready": seen.min_ready,
        "final": seen.final_counts,
        "passed": report.passed(),
        "assertions": report.checks,
        "timeline": report.journal,
    });
    println!("{value}");
}

/// `1h02m03.004s` style.
fn format_ms(ms: u64) -> String {
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
    match (h, m) {
        (0, 0) => format!("{:.1}s", s as f64 / 1_000.0),
        (0, _) => format!("{m}m{:04.1}s", s as f64 / 1_000.0),
        _ => format!("{h}h{m:02}m{:04.1}s", s as f64 / 1_000.0),
    }
}
