//! What the process backend needs from the operating system (Linux):
//! process identity across agent restarts and signals to process groups.

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if it does not exist or is a zombie.
/// A pid plus its start time names one process for good: pids are reused,
/// start times are not.
pub fn start_ticks(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True when the process `pid` started at `ticks` is still running.
pub fn alive(pid: i64, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// Send `signal` to the process group led by `pid`.
pub fn signal_group(pid: i64, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory of ours. ESRCH (already gone) is fine.
        unsafe {
            libc::kill(-(pid as libc::pid_t), signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_has_a_start_time() {
        let me = std::process::id() as i64;
        let ticks = start_ticks(me).expect("we are running");
        assert!(alive(me, ticks));
        assert!(!alive(me, ticks + 1));
        assert!(start_ticks(i32::MAX as i64).is_none());
    }
}
