//! `raw-instance`: a recording instance for the front door's framing
//! vectors (`tests/e2e/framing.rs`). std only.
//!
//! It listens on `127.0.0.1:$PORT`. Each accepted connection that is not a
//! health probe gets a number n (1, 2, ... in the order their first bytes
//! arrive); every byte read from it is appended to `$RECORD_DIR/<n>.in`
//! *before* it is answered, and `$RECORD_DIR/<n>.closed` is created once
//! the connection has ended (the peer closed it, or this side did). So
//! when a client of the front door has its answer, the instance's record
//! of the request is already on disk.
//!
//! Each request it can delimit (head up to CRLFCRLF, then a
//! `content-length` or chunked body) is answered:
//! - `GET /healthz`: `200`, connection closed; a connection whose first
//!   request it is goes unrecorded (the agent probes every few ms);
//! - `/raw/<hex>`: the hex-decoded bytes, verbatim, and the connection
//!   stays open; `/raw-close/<hex>`: the same, then it is closed;
//! - anything else: a fixed `200` with body `ok` and `connection: close`,
//!   then it stops writing and records what else arrives until the peer
//!   closes (bytes a proxy should never have sent are recorded too).
//!
//! A request it cannot delimit is never answered: its bytes are recorded
//! until the peer closes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fixed answer to a request that asks for nothing in particular.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
/// The answer to a `/raw/` target that is not hex.
const BAD_HEX: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\nconnection: close\r\n\r\nbad hex";
/// The largest head it waits for before giving up on delimiting.
const MAX_HEAD: usize = 1 << 20;

fn main() {
    let port = std::env::var("PORT").unwrap_or_default();
    let dir = match std::env::var_os("RECORD_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("RECORD_DIR is not set"),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(&format!("cannot create {}: {e}", dir.display()));
    }
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))
        .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    eprintln!(
        "raw-instance listening on 127.0.0.1:{port}, recording into {}",
        dir.display()
    );
    let recorder = Arc::new(Recorder {
        dir,
        next: AtomicU64::new(1),
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let recorder = recorder.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(&recorder, stream) {
                eprintln!("raw-instance: connection ended: {e}");
            }
        });
    }
}

/// Print `why` and exit with status 2.
fn fail(why: &str) -> ! {
    eprintln!("raw-instance: {why}");
    std::process::exit(2)
}

/// Where connections are recorded, and the next connection's number.
struct Recorder {
    dir: PathBuf,
    next: AtomicU64,
}

/// One connection's record: its number and open `.in` file.
struct Record {
    n: u64,
    file: File,
}

impl Recorder {
    /// A new record, numbered next.
    fn open(&self) -> io::Result<Record> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(n, "in"))?;
        Ok(Record { n, file })
    }

    fn path(&self, n: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{n}.{ext}"))
    }
}

/// What a connection is, as far as its record goes.
enum Kind {
    /// Nothing decided yet: its bytes wait in the buffer.
    Undecided,
    /// A health probe: never recorded.
    Probe,
    /// Recorded.
    Recorded(Record),
}

/// A request delimited at the front of a buffer.
struct Request {
    /// Its request target.
    target: Vec<u8>,
    /// Its length, head and body.
    len: usize,
}

/// What to do after answering.
enum After {
    /// Read the next request.
    Continue,
    /// Stop writing; record what else arrives until the peer closes.
    Drain,
    /// Close now.
    Close,
}

fn serve(recorder: &Recorder, mut stream: TcpStream) -> io::Result<()> {
    let mut kind = Kind::Undecided;
    let mut buf: Vec<u8> = Vec::new();
    let mut scratch = [0u8; 16 * 1024];
    let result = (|| {
        loop {
            let n = stream.read(&mut scratch)?;
            if n == 0 {
                // A connection that ends undecided with bytes is recorded.
                if matches!(kind, Kind::Undecided) && !buf.is_empty() {
                    let mut record = recorder.open()?;
                    record.file.write_all(&buf)?;
                    kind = Kind::Recorded(record);
                }
                return Ok(());
            }
            let fresh = &scratch[..n];
            if let Kind::Recorded(record) = &mut kind {
                record.file.write_all(fresh)?;
            }
            buf.extend_from_slice(fresh);
            if let Kind::Undecided = kind {
                kind = decide(recorder, &buf)?;
                if let Kind::Recorded(record) = &mut kind {
                    record.file.write_all(&buf)?;
                }
            }
            while let Some(request) = delimit(&buf) {
                buf.drain(..request.len);
                match answer(&mut stream, &request.target)? {
                    After::Continue => {}
                    After::Close => return Ok(()),
                    After::Drain => return drain(&mut stream, &mut kind),
                }
            }
        }
    })();
    if let Kind::Recorded(record) = &kind {
        File::create(recorder.path(record.n, "closed"))?;
    }
    result
}

/// What a connection is from its first bytes: a probe once its first head
/// is a `GET /healthz`, recorded once it is anything else.
fn decide(recorder: &Recorder, buf: &[u8]) -> io::Result<Kind> {
    let probe = b"GET /healthz ";
    if buf.len() < probe.len() && probe.starts_with(buf) {
        return Ok(Kind::Undecided);
    }
    match buf.starts_with(probe) {
        true => Ok(Kind::Probe),
        false => Ok(Kind::Recorded(recorder.open()?)),
    }
}

/// Record what arrives until the peer closes, after the write side is shut.
fn drain(stream: &mut TcpStream, kind: &mut Kind) -> io::Result<()> {
    let _ = stream.shutdown(Shutdown::Write);
    let mut scratch = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut scratch)?;
        if n == 0 {
            return Ok(());
        }
        if let Kind::Recorded(record) = kind {
            record.file.write_all(&scratch[..n])?;
        }
    }
}

/// Answer a request for `target`.
fn answer(stream: &mut TcpStream, target: &[u8]) -> io::Result<After> {
    if target == b"/healthz" {
        stream.write_all(OK)?;
        return Ok(After::Close);
    }
    let (hex, after) = if let Some(hex) = target.strip_prefix(b"/raw/") {
        (hex, After::Continue)
    } else if let Some(hex) = target.strip_prefix(b"/raw-close/") {
        (hex, After::Close)
    } else {
        stream.write_all(OK)?;
        return Ok(After::Drain);
    };
    match unhex(hex) {
        Some(bytes) => stream.write_all(&bytes)?,
        None => {
            stream.write_all(BAD_HEX)?;
            return Ok(After::Drain);
        }
    }
    if let After::Close = after {
        let _ = stream.shutdown(Shutdown::Both);
    }
    Ok(after)
}

/// Bytes from hex digits (two per byte).
fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// The request at the front of `buf`, if it is whole and can be delimited.
fn delimit(buf: &[u8]) -> Option<Request> {
    let end = find(buf, b"\r\n\r\n")?.checked_add(4)?;
    if end > MAX_HEAD {
        return None;
    }
    let head = &buf[..end];
    let line_end = find(head, b"\r\n")?;
    let mut words = head[..line_end].split(|&b| b == b' ');
    let _method = words.next()?;
    let target = words.next()?.to_vec();
    let mut length = 0usize;
    let mut chunked = false;
    for line in head[line_end + 2..end - 4].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value).ok()?.parse().ok()?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        }
    }
    let body = match chunked {
        true => chunked_len(&buf[end..])?,
        false if buf.len() - end >= length => length,
        false => return None,
    };
    Some(Request {
        target,
        len: end + body,
    })
}

/// The length of the chunked body `body` begins with, once it is whole.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = find(&body[at..], b"\r\n")?;
        let size_text = body[at..at + line].split(|&b| b == b';').next()?;
        let size = usize::from_str_radix(std::str::from_utf8(size_text).ok()?.trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let line = find(&body[at..], b"\r\n")?;
                at += line + 2;
                if line == 0 {
                    return Some(at);
                }
            }
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if at > body.len() {
            return None;
        }
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `s` without surrounding spaces and tabs.
fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}
