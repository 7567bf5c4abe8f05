//! What the agent and a door process say to each other on the door's
//! control socket: one JSON object a line, a [`Request`] answered by one
//! [`Reply`] on the same connection. A line longer than [`MAX_LINE`] is
//! refused unread, so neither side buffers without bound.

use std::io::{BufRead, Write};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::{InstanceId, RevisionId, RevisionStats};
use crate::proxy::{Door, Member};

/// The longest line either side reads: the member list of a service of
/// 10,000 instances takes about a megabyte.
pub const MAX_LINE: u64 = 16 << 20;

/// What a door serves once opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The service it is the front door of.
    pub service: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it treats its clients.
    pub door: Door,
}

/// A request to a door process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Who are you: its process id, what it serves and its weights.
    Hello,
    /// Listen: the first request a new door process gets.
    Open(Opened),
    /// The instances that take traffic now.
    Members {
        /// Ready instances.
        members: Vec<Member>,
    },
    /// Split traffic by weight per revision (`None`: by instance count).
    Weights {
        /// Weights per revision.
        weights: Option<Vec<(RevisionId, u32)>>,
    },
    /// Take instances out of the table and answer once their requests in
    /// flight have finished, or after `grace_ms`.
    Drain {
        /// The instances to drain.
        ids: Vec<InstanceId>,
        /// The longest wait.
        grace_ms: u64,
    },
    /// Traffic of a revision over a window.
    Stats {
        /// The revision.
        revision: RevisionId,
        /// The window.
        window_ms: u64,
    },
    /// Revisions with traffic metrics.
    Revisions,
    /// Prometheus text of its traffic.
    Prometheus,
    /// Stop listening and exit.
    Close,
}

/// A door process's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The door's process id.
        pid: u32,
        /// What it serves, once opened.
        opened: Option<Opened>,
        /// The weights it splits traffic by.
        weights: Option<Vec<(RevisionId, u32)>>,
    },
    /// Done as asked.
    Done,
    /// Not done, and why.
    Refused {
        /// Why.
        error: String,
    },
    /// Answer to [`Request::Drain`].
    Drained {
        /// Requests still in flight when the grace period ended.
        in_flight: u64,
    },
    /// Answer to [`Request::Stats`].
    Stats {
        /// The revision's traffic.
        stats: RevisionStats,
    },
    /// Answer to [`Request::Revisions`].
    Revisions {
        /// Revisions, sorted.
        revisions: Vec<RevisionId>,
    },
    /// Answer to [`Request::Prometheus`].
    Text {
        /// The exposition text.
        text: String,
    },
}

/// Write `message` as one line.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Read one line as a `T`; `None` at the end of the stream.
pub fn receive<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let read = std::io::Read::take(&mut *input, MAX_LINE + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    parse(&line).map(Some)
}

/// `line` (with or without its newline) as a `T`.
pub fn parse<T: for<'de> Deserialize<'de>>(line: &[u8]) -> std::io::Result<T> {
    if line.len() as u64 > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line of more than {MAX_LINE} bytes"),
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the line ends before its newline",
        ));
    }
    serde_json::from_slice(line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reading a line gives: a request, the end, or an error's kind.
    type Read = Result<Option<Request>, std::io::ErrorKind>;

    /// Raw lines and what reading them gives.
    #[test]
    fn lines_are_read_whole_or_refused() {
        let cases: &[(&[u8], Read)] = &[
            (b"", Ok(None)),
            (b"{\"op\":\"hello\"}\n", Ok(Some(Request::Hello))),
            (b"{\"op\":\"close\"}\n", Ok(Some(Request::Close))),
            (
                b"{\"op\":\"hello\"}",
                Err(std::io::ErrorKind::UnexpectedEof),
            ),
            (
                b"{\"op\":\"launch\"}\n",
                Err(std::io::ErrorKind::InvalidData),
            ),
            (b"\xff\xfe\n", Err(std::io::ErrorKind::InvalidData)),
            (
                b"{\"op\":\"stats\"}\n",
                Err(std::io::ErrorKind::InvalidData),
            ),
            (
                b"{\"op\":\"weights\",\"weights\":[[\"r1\",90],[\"r2\",10]]}\n",
                Ok(Some(Request::Weights {
                    weights: Some(vec![("r1".into(), 90), ("r2".into(), 10)]),
                })),
            ),
            (
                b"{\"op\":\"weights\",\"weights\":[[\"r1\",-1]]}\n",
                Err(std::io::ErrorKind::InvalidData),
            ),
        ];
        for (raw, want) in cases {
            let got = receive::<Request>(&mut &raw[..]).map_err(|e| e.kind());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// A line longer than the cap is refused after reading at most the cap.
    #[test]
    fn a_line_over_the_cap_is_refused() {
        let mut raw = b"{\"op\":\"members\",\"members\":[".to_vec();
        raw.resize(MAX_LINE as usize + 10, b' ');
        raw.extend_from_slice(b"]}\n");
        let got = receive::<Request>(&mut &raw[..]).map_err(|e| e.kind());
        assert_eq!(got, Err(std::io::ErrorKind::InvalidData));
    }

    /// Every request and reply reads back as written, a sticky door too.
    #[test]
    fn messages_round_trip() {
        let door = Door {
            sticky: Some(crate::proxy::Sticky::Header(
                hyper::header::HeaderName::from_static("x-user"),
            )),
            ..Door::default()
        };
        let opened = Opened {
            service: "web".into(),
            addr: "127.0.0.1:8080".parse().unwrap(),
            door,
        };
        let requests = [
            Request::Open(opened.clone()),
            Request::Members {
                members: vec![Member {
                    id: "web-1".into(),
                    revision: "r1".into(),
                    addr: "127.0.0.1:9000".parse().unwrap(),
                }],
            },
            Request::Drain {
                ids: vec!["web-1".into()],
                grace_ms: 5,
            },
        ];
        for r in requests {
            let mut line = Vec::new();
            send(&mut line, &r).unwrap();
            assert_eq!(parse::<Request>(&line).unwrap(), r);
        }
        let reply = Reply::Hello {
            pid: 7,
            opened: Some(opened),
            weights: None,
        };
        let mut line = Vec::new();
        send(&mut line, &reply).unwrap();
        assert_eq!(parse::<Reply>(&line).unwrap(), reply);
    }
}
