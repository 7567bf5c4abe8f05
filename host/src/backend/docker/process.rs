//! Stopping a container on the agent's own machine through its process,
//! held by a pidfd, rather than through the Docker daemon.
//!
//! Docker delivers a signal through containerd and the container's shim,
//! and reports the exit back the same way: on this project's machine about
//! 100 ms from the `kill` call to the process's death, and 100-150 ms more
//! until the wait endpoint answers. An agent that sees the container's
//! process (same machine, host PID namespace) signals it with
//! `pidfd_send_signal` and sees it die from the pidfd's readiness, both at
//! once. Anywhere else the lookup finds nothing and the API is used.
//!
//! The process is looked up when the first signal is sent, by the PID
//! Docker reports for the container, and taken only if the process that
//! PID names, once the pidfd holds it, lives in the container's cgroup: a
//! PID freed and reused in between is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bollard::Docker;

/// The init process of a running container, held by a pidfd.
struct Process(OwnedFd);

impl Process {
    /// Container `id`'s process, if it runs and the agent can reach it.
    async fn of(docker: &Docker, id: &str) -> Option<Process> {
        let inspected = docker.inspect_container(id, None).await.ok()?;
        let full_id = inspected.id?;
        let pid = inspected
            .state?
            .pid
            .filter(|&p| p > 0)
            .and_then(|p| libc::pid_t::try_from(p).ok())?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new file
        // descriptor (or -1); no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
        let process = Process(unsafe { OwnedFd::from_raw_fd(fd) });
        // The pidfd now holds whatever process had `pid`; it is the
        // container's only if that process is in the container's cgroup.
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup.contains(&full_id).then_some(process)
    }

    /// Send `signal`; false if the process is gone.
    fn signal(&self, signal: libc::c_int) -> bool {
        // SAFETY: pidfd_send_signal(2) on our own pidfd, with no siginfo.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        sent == 0
    }

    /// Whether it has exited (a pidfd is readable once its process has).
    fn exited(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd, without waiting.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready > 0 && poll.revents & libc::POLLIN != 0
    }
}

/// How a container is signalled when it stops: through its process once
/// one is found, else (another machine, another PID namespace, not running
/// yet) through the Docker API.
#[derive(Default)]
pub struct Direct {
    /// The process, once found; looked up again at each signal until then
    /// (a task still starting has none yet).
    process: Mutex<Option<Arc<Process>>>,
}

impl Direct {
    /// Send `signal` to container `id`'s process; false when it could not
    /// be reached that way (the caller uses the API).
    pub async fn signal(&self, docker: &Docker, id: &str, signal: libc::c_int) -> bool {
        let known = self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let process = match known {
            Some(process) => process,
            None => match Process::of(docker, id).await {
                Some(found) => {
                    let found = Arc::new(found);
                    *self.process.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                    found
                }
                None => return false,
            },
        };
        process.signal(signal)
    }

    /// How the container ended: as `watched` (its wait endpoint) says, or,
    /// before that answers, once a process signalled here has exited.
    pub fn end(&self, watched: Option<String>) -> Option<String> {
        let process = self.process.lock().unwrap_or_else(|p| p.into_inner());
        let exited = process.as_ref().is_some_and(|p| p.exited());
        watched.or_else(|| exited.then(|| "its process exited after the stop signal".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_signalled_and_seen_to_exit_through_its_pidfd() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // SAFETY: as in `Process::of`.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        assert!(fd >= 0);
        // SAFETY: as in `Process::of`.
        let process = Process(unsafe { OwnedFd::from_raw_fd(fd) });
        assert!(!process.exited());
        assert!(process.signal(libc::SIGTERM));
        let status = child.wait().unwrap();
        assert!(process.exited(), "{status}");
        assert!(
            !process.signal(libc::SIGTERM),
            "a dead process takes no signal"
        );
    }
}
