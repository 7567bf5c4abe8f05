//! `rollout serve`: the agent.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cli, LimitArgs};
use crate::agent::Agent;
use crate::api::{self, Listeners};

/// Arguments of `rollout serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Also listen on TCP (e.g. 127.0.0.1:7070); requests must carry the
    /// bearer token from $ROLLOUT_TOKEN, else a new one written to HOME/agent.token.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Stop the instances of this home that the state does not know (its
    /// state.db was lost or replaced while they ran) and start; without it
    /// the agent refuses to start over them.
    #[arg(long)]
    stop_unknown: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Arguments of `rollout door`.
#[derive(Debug, clap::Args)]
pub struct DoorArgs {
    /// The control socket to listen on.
    #[arg(long, value_name = "PATH")]
    socket: std::path::PathBuf,
}

/// Run one front door until the agent closes it.
pub async fn door(args: &DoorArgs) -> anyhow::Result<ExitCode> {
    crate::door::serve(&args.socket)
        .await
        .with_context(|| format!("front door on {}", args.socket.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// 128 random bits, hex.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// How long a stopping agent waits for effects in flight (a stop drains).
const SHUTDOWN_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Run the agent until SIGTERM or SIGINT.
pub async fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let home = cli.home();
    std::fs::create_dir_all(&home)
        .with_context(|| format!("cannot create the home directory {}", home.display()))?;
    let _lock = api::lock_home(&home)?;
    let tcp = match &args.listen {
        Some(addr) => {
            let token = match std::env::var("ROLLOUT_TOKEN") {
                Ok(t) if !t.is_empty() => t,
                _ => {
                    let token = new_token()?;
                    let path = api::token_path(&home);
                    std::fs::write(&path, &token)
                        .and_then(|_| {
                            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        })
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    token
                }
            };
            Some((addr.as_str(), token))
        }
        None => None,
    };
    // Client connections must not use up what probes, instance
    // connections and the control API need.
    let descriptors = match crate::proxy::admission::raise_descriptor_limit() {
        Ok((before, now)) if before < now => {
            format!("open-file limit raised from {before} to {now}")
        }
        Ok((_, now)) => format!("open-file limit {now}"),
        Err(e) => format!("open-file limit unknown ({e})"),
    };
    let (listeners, tcp_addr) = Listeners::bind(&home, tcp).await?;
    let runtime = cli.runtime(args.limits.limits())?;
    let (agent, mut notes) = Agent::open(&home, runtime).await?;
    let unknown = agent.unknown_instances().await;
    if !unknown.is_empty() {
        if !args.stop_unknown {
            let _ = std::fs::remove_file(api::socket_path(&home));
            anyhow::bail!("{}", crate::agent::refusal(&home, &unknown));
        }
        agent.stop_unknown(&unknown).await;
        let ids: Vec<_> = unknown.iter().map(|u| u.id.as_str()).collect();
        notes.push(format!(
            "stopped {} instance(s) the state did not know: {}",
            ids.len(),
            ids.join(", ")
        ));
    }
    say(&format!(
        "rollout agent {} serving {} (socket {})",
        env!("CARGO_PKG_VERSION"),
        home.display(),
        api::socket_path(&home).display()
    ));
    if let Some(addr) = tcp_addr {
        say(&format!("  also on http://{addr} (bearer token required)"));
    }
    let clients = crate::proxy::admission::Budget::process().limit();
    say(&format!(
        "  {descriptors}: front doors hold at most {clients} client connections together"
    ));
    for note in notes {
        say(&format!("  {note}"));
    }
    listeners.serve(agent.clone(), shutdown_signal()).await;
    let _ = std::fs::remove_file(api::socket_path(&home));
    // Rollouts stop at their next host call, once the effect in flight
    // is done, and are left `interrupted` rather than cut like a kill -9.
    let left = agent.shutdown(SHUTDOWN_WITHIN).await;
    if left > 0 {
        say(&format!(
            "  {left} rollout(s) still in an effect after {} s: cut; the next agent marks them failed",
            SHUTDOWN_WITHIN.as_secs()
        ));
    }
    say("rollout agent stopped; instances keep running and the next agent re-adopts them");
    Ok(ExitCode::SUCCESS)
}

/// Print a line; an agent whose output went away (a closed terminal or
/// pipe) keeps running.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
