//! Instance log files, the same for every runner (a process writes its log
//! itself, a container's is mirrored into it): reading one's tail, rotating
//! it past its cap, pruning those of stopped instances.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::table::Tracked;
use super::{Fleet, failed};
use crate::backend::BackendError;

/// Most log lines one `logs` call returns.
const MAX_LOG_LINES: usize = 10_000;
/// Logs of stopped instances kept per service (the newest), so `rollout
/// logs` can still say why a rolled-back revision failed.
pub(super) const KEPT_LOGS: usize = 50;

impl Fleet {
    /// The last `lines` lines (at most 10,000) an instance wrote,
    /// running or stopped (its log file stays).
    pub fn logs(&self, id: &str, lines: u32) -> Result<Vec<String>, BackendError> {
        let path = self.log_path(id);
        if !self.lock().instances.contains_key(id) && !path.is_file() {
            return Err(BackendError::UnknownInstance(id.to_string()));
        }
        tail(&path, (lines as usize).min(MAX_LOG_LINES)).map_err(failed)
    }
}

/// Rotate instance `p`'s `log` if it outgrew its cap, after the pattern
/// check has read what it had not seen yet.
pub(super) fn rotate_if_large(p: &mut Tracked, log: &Path) {
    let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    if size > p.launch.log_max_bytes {
        if let Some(s) = p.scanner.as_mut() {
            s.scan();
        }
        if let Err(e) = rotate(log) {
            p.reason = Some(format!("log rotation failed: {e}"));
        }
    }
}

/// The last `lines` lines of a file (an instance's log), reading backwards
/// in chunks so a large log costs only what is returned.
pub(super) fn tail(path: &Path, lines: usize) -> std::io::Result<Vec<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    const CHUNK: u64 = 8 * 1024;
    let len = file.seek(SeekFrom::End(0))?;
    let mut start = len;
    // Chunks from the end backwards, newest first.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    while start > 0 && newlines <= lines {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = Vec::with_capacity((start - from) as usize);
        file.seek(SeekFrom::Start(from))?;
        // Short when the file was truncated meanwhile (log rotation).
        (&mut file).take(start - from).read_to_end(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
        start = from;
    }
    let buf: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    Ok(all[skip..].iter().map(|l| l.to_string()).collect())
}

/// Cap a log file the instance keeps appending to: copy it to `PATH.1`
/// (replacing the previous one) and truncate it. The instance holds the
/// file open in append mode, so its next write lands at the new end.
pub(super) fn rotate(path: &Path) -> std::io::Result<()> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    std::fs::copy(path, &rotated)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)
}

/// Delete the oldest logs in `dir` (and their rotated `.1`) beyond the
/// newest `keep`, sparing `running` instances' logs.
pub(super) fn prune_logs(dir: &Path, running: &[PathBuf], keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut stopped: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && !running.contains(p))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    if stopped.len() <= keep {
        return;
    }
    stopped.sort();
    for (_, path) in &stopped[..stopped.len() - keep] {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(rotated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(tail(&path, 2).unwrap(), ["line 4998", "line 4999"]);
        assert_eq!(tail(&path, 6000).unwrap().len(), 5000);
        assert!(tail(&dir.path().join("none"), 3).unwrap().is_empty());
    }

    #[test]
    fn old_logs_of_stopped_instances_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let log = |n: u32| dir.path().join(format!("svc-r1-{n}.log"));
        for n in 1..=5 {
            std::fs::write(log(n), "x").unwrap();
            let at =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(n));
            std::fs::File::options()
                .write(true)
                .open(log(n))
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        std::fs::write(dir.path().join("svc-r1-1.log.1"), "old").unwrap();
        prune_logs(dir.path(), &[log(2)], 2);
        let left: Vec<bool> = (1..=5).map(|n| log(n).exists()).collect();
        // 2 runs; of the stopped 1, 3, 4, 5 the newest two stay.
        assert_eq!(left, [false, true, false, true, true]);
        assert!(!dir.path().join("svc-r1-1.log.1").exists());
    }

    #[test]
    fn rotate_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old\n").unwrap();
        rotate(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let old = std::fs::read_to_string(dir.path().join("x.log.1")).unwrap();
        assert_eq!(old, "old\n");
    }
}
