//! What the fleet learns of an instance through the Docker API: its
//! output, mirrored into the instance's log file, and how it ended.
//!
//! The output is read with Docker's timestamps. A log stream that breaks
//! (the daemon restarted, the connection to it dropped) is opened again
//! from the second of the last line written, and lines up to that line's
//! timestamp are passed over: nothing is lost and nothing written twice.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
use futures_util::{Stream, StreamExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest an ended instance waits for its log stream to end before its
/// end is reported anyway (a Swarm service's log stream can outlive the
/// task it follows).
const LOG_LAG: Duration = Duration::from_millis(500);

/// The first pause before a broken log stream is opened again; it doubles
/// up to [`REOPEN_MAX`] while the stream keeps breaking.
const REOPEN: Duration = Duration::from_millis(100);
/// The longest pause between two attempts.
const REOPEN_MAX: Duration = Duration::from_secs(2);
/// Attempts at the last of an instance's output once it has ended.
const LAST_READS: u32 = 3;

/// The end and the output of one instance.
#[derive(Default)]
pub struct Watch {
    /// How it ended, and when that was seen.
    ended: Mutex<Option<(String, Instant)>>,
    /// Its output has all reached the log file (the log stream ended).
    logged: AtomicBool,
}

impl Watch {
    /// Note how the instance ended.
    pub fn end(&self, how: String) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.get_or_insert((how, Instant::now()));
    }

    /// How it ended, once it has and its last words are in the log.
    pub fn exited(&self) -> Option<String> {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let (how, at) = ended.as_ref()?;
        (self.logged.load(Ordering::SeqCst) || at.elapsed() >= LOG_LAG).then(|| how.clone())
    }

    /// Append the instance's output to the log file `log` (emptied first
    /// when `replay`: the output is read from the instance's start), until
    /// it ends. `open(since, follow)` opens a stream of it with timestamps
    /// from `since` (seconds since the epoch; `None`: from the start),
    /// following it when `follow` (as the first one does when `follow`).
    /// A stream that breaks is opened again, pausing longer each time,
    /// until the instance has ended and its last lines are read.
    pub async fn mirror<S>(
        &self,
        log: &Path,
        replay: bool,
        follow: bool,
        open: impl Fn(Option<i32>, bool) -> S,
    ) where
        S: Stream<Item = Result<LogOutput, bollard::errors::Error>>,
    {
        // Append mode always: rotation truncates the file under the
        // writer, whose next write must land at the new end.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|f| match replay {
                true => f.set_len(0).map(|()| f),
                false => Ok(f),
            });
        if let Ok(mut file) = file {
            let mut last = None;
            let (mut follow, mut pause, mut last_reads) = (follow, REOPEN, 0);
            loop {
                let since = last.map(|ns: i128| {
                    i32::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(i32::MAX)
                });
                if copy(open(since, follow), &mut file, &mut last).await != Copied::Broke {
                    break;
                }
                if self.has_ended() {
                    follow = false;
                    last_reads += 1;
                    if last_reads > LAST_READS {
                        break;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(REOPEN_MAX);
            }
        }
        self.logged.store(true, Ordering::SeqCst);
    }

    fn has_ended(&self) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// Options for reading a container's or a service's output with
/// timestamps, from `since` (seconds since the epoch) if given, following
/// it when `follow`.
pub fn log_options(since: Option<i32>, follow: bool) -> LogsOptions {
    let options = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true);
    match since {
        Some(since) => options.since(since).build(),
        None => options.build(),
    }
}

/// How a stream of output was copied.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    /// To its end.
    End,
    /// Until it broke.
    Broke,
    /// Until the log file could not be written.
    Unwritable,
}

/// Append the lines of `stream` to `file`, passing over those stamped no
/// later than `last` (written already), and keep `last` at the stamp of
/// the last line written.
async fn copy<S>(stream: S, file: &mut File, last: &mut Option<i128>) -> Copied
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let Ok(chunk) = item else {
            return Copied::Broke;
        };
        let (LogOutput::StdOut { message }
        | LogOutput::StdErr { message }
        | LogOutput::Console { message }
        | LogOutput::StdIn { message }) = chunk;
        let (stamp, line) = stamped(&message);
        if let (Some(stamp), Some(seen)) = (stamp, *last)
            && stamp <= seen
        {
            continue;
        }
        if stamp.is_some() {
            *last = stamp;
        }
        if file.write_all(line).is_err() {
            return Copied::Unwritable;
        }
    }
    Copied::End
}

/// Split Docker's timestamp (`2026-11-26T08:12:41.123456789Z `) off a
/// line: its time in nanoseconds since the epoch, and the line. A line
/// without one is kept whole.
fn stamped(message: &[u8]) -> (Option<i128>, &[u8]) {
    let Some(space) = message.iter().position(|&b| b == b' ') else {
        return (None, message);
    };
    let stamp = std::str::from_utf8(&message[..space])
        .ok()
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok());
    match stamp {
        Some(at) => (Some(at.unix_timestamp_nanos()), &message[space + 1..]),
        None => (None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A stream of `lines`, then a break when `breaks`.
    fn stream(
        lines: &[&str],
        breaks: bool,
    ) -> impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + use<> {
        let mut items: Vec<_> = lines
            .iter()
            .map(|l| {
                Ok(LogOutput::StdOut {
                    message: Bytes::from(l.to_string()),
                })
            })
            .collect();
        if breaks {
            items.push(Err(bollard::errors::Error::RequestTimeoutError));
        }
        futures_util::stream::iter(items)
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stream_is_opened_again_from_its_last_line_without_loss_or_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("i.log");
        let watch = Watch::default();
        let opened = Mutex::new(Vec::new());
        let open = |since: Option<i32>, follow: bool| {
            let mut opened = opened.lock().unwrap();
            opened.push((since, follow));
            match opened.len() {
                // Breaks after two lines.
                1 => stream(
                    &[
                        "2026-11-26T08:00:00.100000000Z one\n",
                        "2026-11-26T08:00:01.200000000Z two\n",
                    ],
                    true,
                ),
                // From the second of `two`: `two` again, then the rest.
                _ => stream(
                    &[
                        "2026-11-26T08:00:01.200000000Z two\n",
                        "2026-11-26T08:00:01.300000000Z three\n",
                        "2026-11-26T08:00:02.000000000Z four\n",
                    ],
                    false,
                ),
            }
        };
        watch.mirror(&log, false, true, open).await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "one\ntwo\nthree\nfour\n");
        let since = OffsetDateTime::parse("2026-11-26T08:00:01Z", &Rfc3339)
            .unwrap()
            .unix_timestamp() as i32;
        assert_eq!(*opened.lock().unwrap(), [(None, true), (Some(since), true)]);
        assert!(watch.logged.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_instance_has_ended_its_last_lines_are_read_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("i.log");
        let watch = Watch::default();
        watch.end("exit status: 0".into());
        let opened = Mutex::new(Vec::new());
        let open = |since: Option<i32>, follow: bool| {
            opened.lock().unwrap().push((since, follow));
            stream(&["2026-11-26T08:00:00Z bye\n"], true)
        };
        watch.mirror(&log, false, true, open).await;
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "bye\n");
        let opened = opened.lock().unwrap();
        assert_eq!(opened.len(), 1 + LAST_READS as usize);
        assert!(opened[1..].iter().all(|(_, follow)| !follow));
    }
}
