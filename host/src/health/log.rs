//! Log pattern: incremental search of a growing log file.

use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The longest unfinished line kept in memory. Past it, the line is searched
/// as it stands and only its tail (enough to complete a match that straddles
/// the cut) is kept.
const MAX_PARTIAL: usize = 64 * 1024;
/// Bytes read at a time.
const CHUNK: usize = 8 * 1024;

/// Incremental search for a pattern in a growing log file (an instance's
/// stdout or stderr file, written by the instance since it started).
///
/// Each [`scan`](LogScanner::scan) reads only the bytes appended since the
/// last one. When the file shrank (truncated by log rotation) or was replaced
/// by another file at the same path, it starts again from offset 0. Lines are
/// matched whole: an unfinished last line is kept until its `\n` arrives
/// (bounded to 64 KiB, see [`scan`](LogScanner::scan)).
#[derive(Debug, Clone)]
pub struct LogScanner {
    path: PathBuf,
    pattern: String,
    /// Bytes of the file consumed so far.
    offset: u64,
    /// Identity of the file read so far (device, inode), to notice a
    /// replaced file.
    identity: Option<(u64, u64)>,
    /// The unfinished last line.
    partial: Vec<u8>,
    /// The first matching line, once found.
    found: Option<String>,
}

impl LogScanner {
    /// Watch `path` for lines containing `pattern` (plain text, case
    /// sensitive; an empty pattern matches any line).
    pub fn new(path: impl Into<PathBuf>, pattern: impl Into<String>) -> Self {
        LogScanner {
            path: path.into(),
            pattern: pattern.into(),
            offset: 0,
            identity: None,
            partial: Vec::new(),
            found: None,
        }
    }

    /// Read what was appended since the last scan; returns the first matching
    /// line found so far (without its line ending, invalid UTF-8 replaced).
    /// Sticky: once found, it keeps returning that line without reading more.
    ///
    /// A missing or unreadable file is "nothing yet" (`None`), not an error.
    /// A single line longer than 64 KiB is searched in pieces, so the line
    /// returned may then be a piece of it.
    pub fn scan(&mut self) -> Option<String> {
        if self.found.is_none() {
            self.read_new();
        }
        self.found.clone()
    }

    fn read_new(&mut self) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let identity = identity(&meta);
        if meta.len() < self.offset || (self.identity.is_some() && identity != self.identity) {
            self.offset = 0;
            self.partial.clear();
        }
        self.identity = identity;
        if meta.len() == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut chunk = [0u8; CHUNK];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.offset += n as u64;
            if let Some(line) = self.feed(&chunk[..n]) {
                self.found = Some(line);
                return;
            }
        }
    }

    /// Consume `bytes`; the first matching complete line, if any.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<String> {
        let pattern = self.pattern.as_bytes();
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            let head = &bytes[..pos];
            bytes = &bytes[pos + 1..];
            let line = match self.partial.is_empty() {
                true => head,
                false => {
                    self.partial.extend_from_slice(head);
                    &self.partial[..]
                }
            };
            if contains(line, pattern) {
                return Some(show(line));
            }
            self.partial.clear();
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_PARTIAL {
            if contains(&self.partial, pattern) {
                return Some(show(&self.partial));
            }
            // Keep just enough to complete a match straddling the cut.
            let keep = pattern.len().saturating_sub(1);
            let cut = self.partial.len() - keep;
            self.partial.drain(..cut);
        }
        None
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A line as text, without its `\r`.
fn show(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(unix)]
fn identity(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::Path;

    fn append(path: &Path, text: &[u8]) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text).unwrap();
    }

    #[test]
    fn missing_file_is_nothing_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "panic");
        assert_eq!(scanner.scan(), None);
        append(&path, b"panic: boom\n");
        assert_eq!(scanner.scan(), Some("panic: boom".into()));
    }

    #[test]
    fn reads_only_appended_bytes_and_is_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        append(&path, b"starting\nlistening on 4000\n");
        let mut scanner = LogScanner::new(&path, "FATAL");
        assert_eq!(scanner.scan(), None);
        assert_eq!(scanner.offset, 27);
        append(&path, b"request ok\r\n");
        assert_eq!(scanner.scan(), None);
        append(&path, b"FATAL: out of memory\r\nFATAL: second\n");
        assert_eq!(scanner.scan(), Some("FATAL: out of memory".into()));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(scanner.scan(), Some("FATAL: out of memory".into()));
    }

    #[test]
    fn partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "connection refused");
        append(&path, b"ok\nerror: connec");
        assert_eq!(scanner.scan(), None);
        append(&path, b"tion refu");
        assert_eq!(scanner.scan(), None);
        append(&path, b"sed to db");
        assert_eq!(scanner.scan(), None, "a line is matched only once whole");
        append(&path, b"\n");
        assert_eq!(
            scanner.scan(),
            Some("error: connection refused to db".into())
        );
    }

    #[test]
    fn truncated_file_is_read_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "panic");
        append(&path, b"a long line before rotation\nhalf a li");
        assert_eq!(scanner.scan(), None);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"panic\n");
        assert_eq!(
            scanner.scan(),
            Some("panic".into()),
            "no stale partial line"
        );
    }

    #[test]
    fn replaced_file_is_read_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "panic");
        append(&path, b"1234\n");
        assert_eq!(scanner.scan(), None);
        let next = dir.path().join("next.log");
        append(&next, b"panic: a\nlonger than the old file\n");
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(scanner.scan(), Some("panic: a".into()));
    }

    #[test]
    fn endless_line_stays_bounded_and_is_still_searched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "needle");
        let blob = vec![b'x'; 3 * MAX_PARTIAL + 5];
        append(&path, &blob);
        assert_eq!(scanner.scan(), None);
        assert!(scanner.partial.len() <= MAX_PARTIAL + CHUNK);
        append(&path, &blob);
        assert_eq!(scanner.scan(), None);
        assert!(scanner.partial.len() <= MAX_PARTIAL + CHUNK);
        // A match straddling the point where the buffer was cut.
        append(&path, b"nee");
        assert_eq!(scanner.scan(), None);
        append(&path, b"dle");
        assert_eq!(scanner.scan(), None);
        append(&path, b"\n");
        let line = scanner.scan().expect("found");
        assert!(line.ends_with("xneedle"));
        assert!(line.len() <= MAX_PARTIAL + CHUNK);
    }

    #[test]
    fn match_in_an_overlong_line_is_found_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "needle");
        let mut blob = b"needle".to_vec();
        blob.extend(vec![0u8; 2 * MAX_PARTIAL]);
        append(&path, &blob);
        assert!(scanner.scan().expect("found").starts_with("needle"));
    }

    #[test]
    fn empty_pattern_matches_any_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut scanner = LogScanner::new(&path, "");
        append(&path, b"no newline yet");
        assert_eq!(scanner.scan(), None);
        append(&path, b"\n");
        assert_eq!(scanner.scan(), Some("no newline yet".into()));
    }
}
