//! How an instance ended, in the same words on every backend: a process's
//! status and a container's exit code read alike.

/// `exit status: 3`, or `killed by signal 9 (SIGKILL)` when `signal` ended
/// it; `code` and `signal` as a process's wait status gives them.
pub fn describe(code: Option<i32>, signal: Option<i32>) -> String {
    match (signal, code) {
        (Some(signal), _) => format!("killed by signal {signal}{}", name(signal)),
        (None, Some(code)) => format!("exit status: {code}"),
        (None, None) => "ended, status unknown".to_string(),
    }
}

/// The same words for a container's exit code: its init reports a
/// process killed by signal `n` as `128 + n` (what `docker wait` calls
/// 137 is SIGKILL).
pub fn describe_container(code: i64) -> String {
    match code {
        129..=192 => describe(None, Some((code - 128) as i32)),
        _ => describe(i32::try_from(code).ok(), None),
    }
}

/// ` (SIGKILL)` for the signals an instance usually ends by, else nothing.
fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_process_and_a_container_killed_alike_read_alike() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(
            describe(killed.code(), killed.signal()),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(describe_container(137), "killed by signal 9 (SIGKILL)");
        assert_eq!(describe_container(143), "killed by signal 15 (SIGTERM)");
        let exited = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(exited.code(), exited.signal()), "exit status: 3");
        assert_eq!(describe_container(3), "exit status: 3");
        assert_eq!(describe_container(-1), "exit status: -1");
    }
}
