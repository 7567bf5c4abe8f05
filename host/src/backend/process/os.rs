//! What the process backend needs from the operating system (Linux):
//! process identity across agent restarts, signals to process groups, and
//! finding the instances that log into a directory.

use std::path::Path;

/// The fields of `/proc/PID/stat` after `comm` (state first), or `None`
/// if the process does not exist or is a zombie.
fn stat(pid: i64) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    (fields.first().map(String::as_str) != Some("Z")).then_some(fields)
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if it does not exist or is a zombie.
/// A pid plus its start time names one process for good: pids are reused,
/// start times are not.
pub fn start_ticks(pid: i64) -> Option<u64> {
    stat(pid)?.get(19)?.parse().ok()
}

/// The process-group leaders whose standard output is a file `ID.log` in
/// `dir`, as the process backend starts every instance of a fleet logging
/// there: (pid, `ID`). Processes this user may not inspect are passed
/// over; so are the children of an instance (they are in its group).
pub fn instances_logging_to(dir: &Path) -> Vec<(i64, String)> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i64>().ok())
        else {
            continue;
        };
        let Ok(out) = std::fs::read_link(entry.path().join("fd/1")) else {
            continue;
        };
        let leads = stat(pid).is_some_and(|f| f.get(2) == Some(&pid.to_string()));
        if leads && let Some(id) = log_of(&dir, &out) {
            found.push((pid, id));
        }
    }
    found
}

/// `ID` when `file` is `dir/ID.log`.
fn log_of(dir: &Path, file: &Path) -> Option<String> {
    if file.parent() != Some(dir) || file.extension().is_none_or(|e| e != "log") {
        return None;
    }
    Some(file.file_stem()?.to_str()?.to_string())
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

    #[test]
    fn a_group_leader_logging_into_a_directory_is_found_by_its_log() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("web-r1-7.log")).unwrap();
        let unlogged = std::fs::File::create(dir.path().join("notes.txt")).unwrap();
        let spawn = |out: std::fs::File, group: bool| {
            let mut command = std::process::Command::new("sleep");
            command.arg("30").stdout(out);
            if group {
                command.process_group(0);
            }
            command.spawn().unwrap()
        };
        let mut children = [
            spawn(log.try_clone().unwrap(), true),
            // In our group, not leading its own: not an instance.
            spawn(log, false),
            spawn(unlogged, true),
        ];
        let found = instances_logging_to(dir.path());
        let leader = i64::from(children[0].id());
        assert_eq!(found, [(leader, "web-r1-7".to_string())]);
        for child in &mut children {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
