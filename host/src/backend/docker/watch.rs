//! What the fleet learns of an instance through the Docker API: its
//! output, mirrored into the instance's log file, and how it ended.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures_util::{Stream, StreamExt};

/// Longest an ended instance waits for its log stream to end before its
/// end is reported anyway (a Swarm service's log stream can outlive the
/// task it follows).
const LOG_LAG: Duration = Duration::from_millis(500);

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

    /// Append everything `stream` yields to the log file `log` (emptied
    /// first when `replay`: the stream starts from the instance's start),
    /// until the stream ends.
    pub async fn mirror<S>(&self, log: &Path, replay: bool, stream: S)
    where
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
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(chunk)) = stream.next().await {
                let (LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message }) = chunk;
                if file.write_all(&message).is_err() {
                    break;
                }
            }
        }
        self.logged.store(true, Ordering::SeqCst);
    }
}
