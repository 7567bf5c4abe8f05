//! `rollout bench resume`: how soon a restarted agent has the rollout it
//! was killed during going again. Each round runs `rollout serve` (this
//! executable) in a home of its own, deploys `demo-app`, starts a rolling
//! update that holds once its first new instance is ready (the policy
//! sleeps through `min-ready-ms`), kills the agent with SIGKILL
//! and starts it again: the figures are the time from that start to the
//! agent answering, and to the resumed rollout going on live (the log
//! replayed, the front door's weights set again).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::rollout::spec;
use crate::executor::Durable;
use crate::store::Store;

/// Figures of `rollout bench resume`; units are in the names.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeFigures {
    /// Instances of the service.
    pub replicas: u32,
    /// Rounds measured; medians are reported.
    pub rounds: u32,
    /// From starting the agent to its control socket answering.
    pub agent_up_ms: f64,
    /// From starting the agent to the resumed rollout going on live.
    pub resumed_ms: f64,
    /// Calls the resumed policy replayed.
    pub calls_replayed: usize,
}

/// Measure `rounds` restarts of an agent running `replicas` of `app`.
pub fn resume_figures(app: &Path, replicas: u32, rounds: u32) -> anyhow::Result<ResumeFigures> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let (mut up, mut resumed, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let home = std::env::temp_dir().join(format!(
            "rollout-bench-resume-{}-{round}",
            std::process::id()
        ));
        let mut bed = Bed {
            exe: exe.clone(),
            home,
            agent: None,
            follower: None,
        };
        let (u, r, n) = bed.round(app, replicas)?;
        up.push(u);
        resumed.push(r);
        calls.push(n);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    calls.sort_unstable();
    Ok(ResumeFigures {
        replicas,
        rounds,
        agent_up_ms: median(up),
        resumed_ms: median(resumed),
        calls_replayed: calls[calls.len() / 2],
    })
}

/// One round's agent, client and home, cleaned up when dropped.
struct Bed {
    exe: PathBuf,
    home: PathBuf,
    agent: Option<Child>,
    follower: Option<Child>,
}

impl Bed {
    /// Deploy, start a rollout, kill the agent, restart it: (agent up,
    /// rollout resumed, calls replayed).
    fn round(&mut self, app: &Path, replicas: u32) -> anyhow::Result<(Duration, Duration, usize)> {
        std::fs::create_dir_all(&self.home)?;
        self.serve()?;
        self.wait("the agent to answer", Duration::from_secs(30), |b| {
            b.answers()
        })?;
        let v1 = self.write_spec(app, replicas, "v1")?;
        let deployed = self.rollout(&["run", "--spec", &v1]).status()?;
        anyhow::ensure!(deployed.success(), "deploying v1 failed");
        let v2 = self.write_spec(app, replicas, "v2")?;
        let follower = self
            .rollout(&["run", "--spec", &v2, "--param", "min-ready-ms=1h"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.follower = Some(follower);
        let store = Store::open(&self.home.join("state.db"))?;
        let holding = |_: &Bed| {
            let journal = store.journal(2, 0).unwrap_or_default();
            journal
                .iter()
                .any(|r| r.entry.text.ends_with("(r2) is ready"))
        };
        self.wait("the first new instance", Duration::from_secs(60), holding)?;
        self.kill_agent();
        let started = Instant::now();
        self.serve()?;
        self.wait("the agent to answer", Duration::from_secs(30), |b| {
            b.answers()
        })?;
        let up = started.elapsed();
        let live = |_: &Bed| {
            let journal = store.journal(2, 0).unwrap_or_default();
            journal
                .iter()
                .any(|r| r.entry.text.contains("goes on live"))
        };
        self.wait("the rollout to resume", Duration::from_secs(30), live)?;
        let resumed = started.elapsed();
        Ok((up, resumed, Durable::replayed_calls(&store.calls(2)?)))
    }

    fn serve(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.exe)
            .args(["serve", "--home"])
            .arg(&self.home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run rollout serve")?;
        self.agent = Some(child);
        Ok(())
    }

    fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    fn rollout(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .env("ROLLOUT_HOME", &self.home)
            .env_remove("ROLLOUT_AGENT")
            .stdout(Stdio::null());
        command
    }

    fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.home.join("agent.sock")).is_ok()
    }

    fn write_spec(&self, app: &Path, replicas: u32, version: &str) -> anyhow::Result<String> {
        let path = self.home.join(format!("{version}.toml"));
        std::fs::write(&path, spec(app, replicas, version, 0, "1")?)?;
        Ok(path.display().to_string())
    }

    /// Poll `done` every millisecond for at most `limit`.
    fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Bed) -> bool) -> anyhow::Result<()> {
        let started = Instant::now();
        while !done(self) {
            anyhow::ensure!(started.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.kill_agent();
        if let Some(mut follower) = self.follower.take() {
            let _ = follower.kill();
            let _ = follower.wait();
        }
        if let Ok(store) = Store::open(&self.home.join("state.db"))
            && let Ok(instances) = store.instances("bench")
        {
            for pid in instances.iter().map(|i| i.pid).filter(|&p| p > 0) {
                // SAFETY: signals the instance's own process group.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
