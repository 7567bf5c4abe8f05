//! Log lines on stdout, each flushed at once: the host tails the log files.

use std::fmt::Display;
use std::io::Write;

/// Writes `[INFO] message` to stdout and flushes it.
pub fn info(message: impl Display) {
    write_line("INFO", message);
}

/// Writes `[ERROR] message` to stdout and flushes it.
pub fn error(message: impl Display) {
    write_line("ERROR", message);
}

/// Writes one prefixed line; a closed stdout must not take the server down,
/// so write errors are ignored.
fn write_line(level: &str, message: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{level}] {message}");
    let _ = out.flush();
}
