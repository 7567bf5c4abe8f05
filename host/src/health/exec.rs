//! Exec probe: a command must exit 0.

use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};
use tokio::time::{Instant, timeout_at};

use super::timed_out;

/// How much of stderr is kept for the reason (its first line, at most).
const STDERR_KEEP: usize = 1024;
/// How many characters of that line go into the reason.
const REASON_CHARS: usize = 200;
/// After a failing command exits, how long to wait for the rest of its first
/// stderr line (a background process it left may hold the pipe open).
const STDERR_GRACE: Duration = Duration::from_millis(100);

/// Run `argv` (no shell) with `env` added to the inherited environment,
/// stdin null, stdout discarded; passes when it exits 0 within `timeout_ms`.
///
/// The command runs in its own process group, which is killed (SIGKILL) when
/// the timeout passes or when this future is dropped. The first line of its
/// stderr goes into the reason.
///
/// Errors read like `exec ["sh","-c","exit 3"]: exit status 3`,
/// `exec ["check"]: exit status 1: database unreachable`,
/// `exec ["sleep","9"]: timed out after 1000 ms` or
/// `exec ["nope"]: cannot start: No such file or directory (os error 2)`.
pub async fn exec(
    argv: &[String],
    env: &[(String, String)],
    timeout_ms: u64,
) -> Result<(), String> {
    let shown = show(argv);
    let fail = |why: String| Err(format!("exec {shown}: {why}"));
    let Some((program, args)) = argv.split_first() else {
        return fail("empty command".into());
    };
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    // Declared after `child`, so dropped (group killed) before it.
    let mut group = GroupGuard(child.id());

    let mut stderr = Vec::new();
    let status = {
        let mut reader = pin!(drain_stderr(child.stderr.take(), &mut stderr));
        let mut drained = false;
        let waited = timeout_at(deadline, async {
            loop {
                tokio::select! {
                    biased;
                    status = child.wait() => break status,
                    () = &mut reader, if !drained => drained = true,
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(status)) if status.success() => {
                group.disarm();
                return Ok(());
            }
            Ok(Ok(status)) => {
                group.disarm();
                if !drained {
                    let grace = deadline.min(Instant::now() + STDERR_GRACE);
                    let _ = timeout_at(grace, &mut reader).await;
                }
                status
            }
            Ok(Err(e)) => return fail(format!("cannot wait for it: {e}")),
            Err(_) => {
                group.kill();
                let _ = child.kill().await;
                return fail(timed_out(timeout_ms));
            }
        }
    };
    match first_line(&stderr) {
        Some(line) => fail(format!("{}: {line}", describe(status))),
        None => fail(describe(status)),
    }
}

/// `["sh","-c","exit 3"]`.
fn show(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(","))
}

/// `exit status 3` or `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.to_string()
}

/// Read stderr to its end (so the command never blocks on a full pipe),
/// keeping the start of it, up to its first newline, in `keep`.
async fn drain_stderr(stderr: Option<ChildStderr>, keep: &mut Vec<u8>) {
    let Some(mut stderr) = stderr else { return };
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if keep.len() < STDERR_KEEP && !keep.contains(&b'\n') {
                    let room = STDERR_KEEP - keep.len();
                    keep.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
    }
}

/// The first non-empty line of `bytes`, trimmed and shortened.
fn first_line(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = String::from_utf8_lossy(&bytes[..end]);
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let mut short: String = line.chars().take(REASON_CHARS).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    Some(short)
}

/// Kills the command's process group (the command and whatever it started)
/// unless disarmed: on timeout, and when the probe is dropped mid-way.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// The command exited by itself: leave its group alone.
    fn disarm(&mut self) {
        self.0 = None;
    }

    /// SIGKILL the group now (once).
    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0.take().and_then(|id| libc::pid_t::try_from(id).ok()) {
            // SAFETY: killpg only sends a signal. The group leader is our
            // child and has not been reaped, so the group id is still ours.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant as StdInstant;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn sh(script: &str) -> Vec<String> {
        argv(&["sh", "-c", script])
    }

    #[tokio::test]
    async fn exit_zero_passes() {
        assert_eq!(exec(&argv(&["true"]), &[], 5_000).await, Ok(()));
    }

    #[tokio::test]
    async fn exit_nonzero_fails() {
        assert_eq!(
            exec(&argv(&["false"]), &[], 5_000).await,
            Err(r#"exec ["false"]: exit status 1"#.into())
        );
        assert_eq!(
            exec(&sh("exit 3"), &[], 5_000).await,
            Err(r#"exec ["sh","-c","exit 3"]: exit status 3"#.into())
        );
    }

    #[tokio::test]
    async fn first_stderr_line_is_the_reason() {
        let script = "echo ignored; printf ' db down \\nsecond line\\n' >&2; exit 2";
        assert_eq!(
            exec(&sh(script), &[], 5_000).await,
            Err(format!(
                "exec {}: exit status 2: db down",
                show(&sh(script))
            ))
        );
    }

    #[tokio::test]
    async fn lots_of_output_does_not_block() {
        let script = "head -c 1000000 /dev/zero | tr '\\0' x >&2; head -c 1000000 /dev/zero";
        assert_eq!(exec(&sh(script), &[], 10_000).await, Ok(()));
    }

    #[tokio::test]
    async fn background_process_holding_stderr_does_not_delay_the_verdict() {
        let started = StdInstant::now();
        let script = "sleep 3 & echo boom >&2; exit 4";
        assert_eq!(
            exec(&sh(script), &[], 10_000).await,
            Err(format!("exec {}: exit status 4: boom", show(&sh(script))))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn sees_the_instance_env() {
        let env = [("PORT".to_string(), "1234".to_string())];
        let script = r#"test "$PORT" = 1234"#;
        assert_eq!(exec(&sh(script), &env, 5_000).await, Ok(()));
        assert!(exec(&sh(script), &[], 5_000).await.is_err());
    }

    #[tokio::test]
    async fn missing_program_and_empty_argv_fail() {
        let err = exec(&argv(&["/nonexistent/rollout-check"]), &[], 5_000)
            .await
            .unwrap_err();
        assert!(
            err.starts_with(r#"exec ["/nonexistent/rollout-check"]: cannot start: "#),
            "{err}"
        );
        assert_eq!(
            exec(&[], &[], 5_000).await,
            Err("exec []: empty command".into())
        );
    }

    #[tokio::test]
    async fn killed_by_signal_is_named() {
        assert_eq!(
            exec(&sh("kill -9 $$"), &[], 5_000).await,
            Err(r#"exec ["sh","-c","kill -9 $$"]: killed by signal 9"#.into())
        );
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet), waiting up to
    /// 5 s for it.
    async fn ends(pid: u32) -> bool {
        let stat = format!("/proc/{pid}/stat");
        let until = StdInstant::now() + Duration::from_secs(5);
        while StdInstant::now() < until {
            match std::fs::read_to_string(&stat) {
                Err(_) => return true,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    return true;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        false
    }

    /// A command that starts a background `sleep` and writes its pid to
    /// `pidfile`, then waits for it.
    fn spawner(pidfile: &Path) -> Vec<String> {
        sh(&format!(
            "sleep 60 & echo $! > {}.tmp && mv {0}.tmp {0}; wait",
            pidfile.display()
        ))
    }

    fn read_pid(pidfile: &Path) -> u32 {
        std::fs::read_to_string(pidfile)
            .expect("the command wrote its child's pid before the timeout")
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let started = StdInstant::now();
        let argv = spawner(&pidfile);
        assert_eq!(
            exec(&argv, &[], 1_000).await,
            Err(format!("exec {}: timed out after 1000 ms", show(&argv)))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(ends(read_pid(&pidfile)).await, "background sleep survived");
    }

    #[tokio::test]
    async fn dropping_the_probe_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let argv = spawner(&pidfile);
        let probe = exec(&argv, &[], 60_000);
        let outer = tokio::time::timeout(Duration::from_millis(1_000), probe).await;
        assert!(outer.is_err(), "the probe should still be running");
        assert!(ends(read_pid(&pidfile)).await, "background sleep survived");
    }
}
