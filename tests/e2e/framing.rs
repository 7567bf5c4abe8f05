//! The front door cannot be desynchronised: raw-byte vectors, request side
//! and answer side, each sent on a fresh connection to a real front door
//! with `tests/raw-instance` behind it, each checked for what the client
//! got *and* the exact bytes the instance received.
//!
//! The expectations are the rules of `host/http1` (its crate doc) and the
//! canonical form of a forwarded head: request line, `host` first, the
//! client's end-to-end fields in order, then the `content-length` or
//! `transfer-encoding: chunked` the door decided; chunked bodies chunked
//! anew, without extensions or trailers. Sources of the cases: RFC 9112,
//! http-garden's trophies, aws/http-desync-guardian's vectors and
//! smuggler's Transfer-Encoding mutations.
//!
//! `FRAMING_ONLY=substr` runs the vectors whose name contains it;
//! `FRAMING_VERBOSE=1` prints each vector's outcome.
//!
//! A vector the door keeps the connection open for is followed by a
//! second request on the same connection ([`FOLLOW_UP`]): it must be
//! answered by the instance and reach it canonically, right after the
//! vector's own bytes. So bytes a door took for the end of one message
//! but an instance for the start of another show up in the record.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::proxy::free_port;
use crate::util::{Agent, raw_instance};

/// How long one vector may take for each of its waits.
const WAIT: Duration = Duration::from_secs(5);

/// The request sent after every vector that leaves the connection open.
const FOLLOW_UP: &[u8] = b"GET /after HTTP/1.1\r\nHost: after\r\nConnection: close\r\n\r\n";
/// [`FOLLOW_UP`] as the instance receives it.
const FOLLOW_UP_FORWARDED: &[u8] = b"GET /after HTTP/1.1\r\nhost: after\r\n\r\n";
/// The instance's fixed answer, as the client sees it (see [`view`]).
const OK: &str = "200/cl/ok";
/// Hex of an answer the raw instance writes for `/raw/<hex>`, keeping its
/// connection open: `200`, `ok`, no `connection: close`.
const KEEP_OPEN_OK: &str =
    "485454502f312e3120323030204f4b0d0a636f6e74656e742d6c656e6774683a20320d0a0d0a6f6b";

/// What the instance must have received for a vector (before any
/// [`FOLLOW_UP`]).
#[derive(Debug, Clone)]
enum Want {
    /// Nothing at all: the door refused the request before forwarding it.
    Nothing,
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// This head, then a chunked body written canonically by the door
    /// (`<hex>\r\n<data>\r\n` chunks, no extension, no trailer, then
    /// `0\r\n\r\n`) that decodes to this body. How the door cuts a body
    /// into chunks depends on how the client's bytes were read (one read
    /// or two), which a test on a real socket does not decide: so the
    /// decoded body is compared, and the chunk syntax checked strictly.
    Chunked(Vec<u8>, Vec<u8>),
}

/// When the second part of a vector's bytes is sent.
#[derive(Debug, Clone)]
enum Then {
    /// After the client has read a `100 Continue`.
    AfterContinue(Vec<u8>),
    /// After the instance has recorded bytes of this vector (the door is
    /// streaming its body).
    AfterForwarded(Vec<u8>),
}

/// One vector.
#[derive(Debug, Clone)]
struct Vector {
    name: String,
    /// The client's bytes, sent in one write.
    send: Vec<u8>,
    then: Option<Then>,
    /// What the client must see, answer by answer (see [`view`]), then
    /// `| closed` or `| open` (the door kept the connection: the
    /// [`FOLLOW_UP`] was answered with the instance's 200).
    client: String,
    instance: Want,
}

/// A vector answered by the instance's fixed 200, the connection kept.
fn taken(name: &str, send: impl AsRef<[u8]>, forwarded: impl AsRef<[u8]>) -> Vector {
    Vector {
        name: name.to_string(),
        send: send.as_ref().to_vec(),
        then: None,
        client: format!("{OK} | open"),
        instance: Want::Exact(forwarded.as_ref().to_vec()),
    }
}

/// A chunked request answered by the fixed 200: the instance gets `head`
/// and a body decoding to `body`.
fn taken_chunked(name: &str, send: impl AsRef<[u8]>, head: &str, body: &str) -> Vector {
    Vector {
        instance: Want::Chunked(head.as_bytes().to_vec(), body.as_bytes().to_vec()),
        ..taken(name, send, "")
    }
}

/// A request the door answers with `status` and closes on, forwarding
/// nothing.
fn refused(name: &str, send: impl AsRef<[u8]>, status: u16) -> Vector {
    Vector {
        name: name.to_string(),
        send: send.as_ref().to_vec(),
        then: None,
        client: format!("{status} | closed"),
        instance: Want::Nothing,
    }
}

/// An answer-side vector: `GET /raw-close/<hex of answer>` (the instance
/// writes `answer` verbatim, then closes); the client must see `client`.
fn answered(name: &str, answer: impl AsRef<[u8]>, client: &str) -> Vector {
    let hex: String = answer.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let send = format!("GET /raw-close/{hex} HTTP/1.1\r\nHost: h\r\n\r\n");
    let forwarded = format!("GET /raw-close/{hex} HTTP/1.1\r\nhost: h\r\n\r\n");
    Vector {
        name: name.to_string(),
        send: send.into_bytes(),
        then: None,
        client: client.to_string(),
        instance: Want::Exact(forwarded.into_bytes()),
    }
}

impl Vector {
    fn client(mut self, client: &str) -> Self {
        self.client = client.to_string();
        self
    }

    fn instance(mut self, want: Want) -> Self {
        self.instance = want;
        self
    }

    fn then(mut self, then: Then) -> Self {
        self.then = Some(then);
        self
    }
}

/// The recording instance's directory: what each connection received.
struct Record {
    dir: PathBuf,
    /// Bytes of each connection already accounted for.
    seen: BTreeMap<u64, usize>,
}

impl Record {
    /// Connection numbers and sizes recorded so far.
    fn sizes(&self) -> BTreeMap<u64, usize> {
        let mut sizes = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).expect("read the record directory") {
            let path = entry.expect("a record entry").path();
            if path.extension().is_some_and(|e| e == "in")
                && let Some(n) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
            {
                let len = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
                sizes.insert(n, len);
            }
        }
        sizes
    }

    /// Connections with bytes not accounted for yet.
    fn touched(&self) -> Vec<u64> {
        let sizes = self.sizes();
        sizes
            .iter()
            .filter(|(n, len)| self.seen.get(n).copied().unwrap_or(0) < **len)
            .map(|(n, _)| *n)
            .collect()
    }

    fn closed(&self, n: u64) -> bool {
        self.dir.join(format!("{n}.closed")).exists()
    }

    /// Wait until every connection that received bytes since the last
    /// take has ended, then take their new bytes, in connection order;
    /// whether they all ended within [`WAIT`].
    fn take(&mut self) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + WAIT;
        let ended = wait_for(deadline, || self.touched().iter().all(|&n| self.closed(n)));
        let mut bytes = Vec::new();
        for n in self.touched() {
            let all = std::fs::read(self.dir.join(format!("{n}.in"))).expect("read a record");
            let from = self.seen.get(&n).copied().unwrap_or(0);
            bytes.extend_from_slice(&all[from..]);
            self.seen.insert(n, all.len());
        }
        (bytes, ended)
    }
}

/// Poll `ready` until it holds or `deadline` passes; whether it held.
fn wait_for(deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An answer as the client saw it.
enum Parsed {
    /// One whole answer (its view) and its length in the buffer.
    Answer(String, usize),
    /// Not whole yet.
    More,
}

/// Parse the answer at the front of `buf`; `eof`: nothing more comes, so
/// a partial answer is shown as cut (`/cut`) and stray bytes as such.
///
/// An answer from the instance (it carries `x-rollout-revision`) is shown
/// `status/framing/body`: framing `cl` (one `content-length`), `chunked`,
/// `eof` (neither: read to the close) or `none` (a 1xx, 204 or 304), or
/// `bad-framing` when the door sent both or two lengths; `/trailers` when
/// a chunked body had any. The door's own answers are shown by status.
fn parse(buf: &[u8], eof: bool) -> Parsed {
    if buf.is_empty() {
        return Parsed::More;
    }
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|at| at + 4) else {
        return match eof {
            true => Parsed::Answer(format!("garbage:{}", buf.escape_ascii()), buf.len()),
            false => Parsed::More,
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 0 {
        return Parsed::Answer(format!("bad-status:{status_line:?}"), buf.len());
    }
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &'static str| fields.iter().filter(move |(n, _)| n == name);
    let own = get("x-rollout-revision").next().is_none();
    let lengths: Vec<&String> = get("content-length").map(|(_, v)| v).collect();
    let chunked = get("transfer-encoding").next().is_some();
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let rest = &buf[head_end..];
    let (framing, body, used, trailers) = if bodiless {
        ("none", Vec::new(), 0, false)
    } else if chunked && lengths.is_empty() {
        match dechunk(rest) {
            Ok((body, used, trailers)) => ("chunked", body, used, trailers),
            Err(partial) if eof => {
                let view = format!("{status}/chunked/{}/cut", partial.escape_ascii());
                return Parsed::Answer(view, buf.len());
            }
            Err(_) => return Parsed::More,
        }
    } else if let ([length], false) = (&lengths[..], chunked) {
        let n: usize = length.parse().unwrap_or(usize::MAX);
        if rest.len() < n {
            return match eof {
                true => Parsed::Answer(
                    format!("{status}/cl/{}/cut", rest.escape_ascii()),
                    buf.len(),
                ),
                false => Parsed::More,
            };
        }
        ("cl", rest[..n].to_vec(), n, false)
    } else if lengths.is_empty() && !chunked {
        match eof {
            true => ("eof", rest.to_vec(), rest.len(), false),
            false => return Parsed::More,
        }
    } else {
        ("bad-framing", rest.to_vec(), rest.len(), false)
    };
    let view = match own {
        true => status.to_string(),
        false => {
            let trailers = if trailers { "/trailers" } else { "" };
            format!("{status}/{framing}/{}{trailers}", body.escape_ascii())
        }
    };
    Parsed::Answer(view, head_end + used)
}

/// Decode a chunked body at the front of `buf` (leniently: any size line,
/// extensions skipped); its data, its length and whether it had trailer
/// fields; until it is whole (or when it cannot be read), the data of
/// its whole chunks so far.
fn dechunk(buf: &[u8]) -> Result<(Vec<u8>, usize, bool), Vec<u8>> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(line) = find(&buf[at..], b"\r\n") else {
            return Err(body);
        };
        let text = String::from_utf8_lossy(&buf[at..at + line]);
        let size = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return Err(body);
        };
        at += line + 2;
        if size == 0 {
            let mut trailers = false;
            loop {
                let Some(line) = find(&buf[at..], b"\r\n") else {
                    return Err(body);
                };
                at += line + 2;
                if line == 0 {
                    return Ok((body, at, trailers));
                }
                trailers = true;
            }
        }
        if buf.len() < at + size + 2 {
            return Err(body);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many answers `client` (a vector's expectation) lists that are not
/// interim: those to wait for.
fn finals(client: &str) -> usize {
    let answers = client.split(" | ").next().unwrap_or_default();
    answers
        .split(' ')
        .filter(|a| !a.is_empty() && !a.starts_with('1'))
        .count()
}

/// A client connection to the front door, reading answers.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Answers read so far.
    views: Vec<String>,
}

impl Conn {
    /// Read until `done(views)` holds or the door closes; `false` when
    /// [`WAIT`] passed first.
    fn read_until(&mut self, mut done: impl FnMut(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut scratch = [0u8; 16 * 1024];
        loop {
            while let Parsed::Answer(view, used) = parse(&self.buf, self.eof) {
                self.buf.drain(..used);
                self.views.push(view);
                if self.buf.is_empty() {
                    break;
                }
            }
            if done(&self.views) || self.eof {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut scratch) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&scratch[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // A reset after the door's answer: the connection ended.
                Err(_) => self.eof = true,
            }
        }
    }
}

/// What a vector gave.
struct Outcome {
    client: String,
    instance: String,
}

/// Run `vector` against the door at `addr`.
fn exercise(vector: &Vector, addr: &str, record: &mut Record) -> Outcome {
    let before = record.take();
    assert!(
        before.0.is_empty(),
        "stray bytes before {}: {:?}",
        vector.name,
        before.0.escape_ascii()
    );
    let mut conn = Conn {
        stream: TcpStream::connect(addr).expect("connect to the front door"),
        buf: Vec::new(),
        eof: false,
        views: Vec::new(),
    };
    let mut client = String::new();
    let _ = conn.stream.set_nodelay(true);
    let _ = conn.stream.write_all(&vector.send);
    match &vector.then {
        None => {}
        Some(Then::AfterContinue(more)) => {
            let got = conn.read_until(|v| v.iter().any(|a| a == "100"));
            if got && !conn.eof {
                let _ = conn.stream.write_all(more);
            } else {
                client.push_str("(no 100 Continue) ");
            }
        }
        Some(Then::AfterForwarded(more)) => {
            let deadline = Instant::now() + WAIT;
            if wait_for(deadline, || !record.touched().is_empty()) {
                let _ = conn.stream.write_all(more);
            } else {
                client.push_str("(nothing forwarded) ");
            }
        }
    }
    let wanted = finals(&vector.client);
    let whole = conn.read_until(|v| v.iter().filter(|a| !a.starts_with('1')).count() >= wanted);
    let open = vector.client.ends_with("| open");
    client.push_str(&conn.views.join(" "));
    if !whole {
        client.push_str(" (timed out)");
    }
    conn.views.clear();
    let _ = conn.stream.set_nodelay(true);
    if !conn.eof && open {
        // Kept open: the follow-up request must be served on it.
        let _ = conn.stream.write_all(FOLLOW_UP);
        conn.read_until(|v| !v.is_empty());
        match conn.views[..] {
            [ref only] if only == OK => client.push_str(" | open"),
            _ => client.push_str(&format!(" | follow-up got {:?}", conn.views)),
        }
    } else {
        // The door must close: nothing more but its end.
        let ended = conn.read_until(|_| false) && conn.eof;
        if !conn.views.is_empty() {
            client.push_str(&format!(" +{}", conn.views.join(" ")));
        }
        client.push_str(match (ended, conn.eof) {
            (_, true) if !open => " | closed",
            (_, true) => " | closed (wanted open)",
            _ => " | not closed",
        });
    }
    let (bytes, ended) = record.take();
    let mut instance = shown(&bytes, &vector.instance);
    if !ended {
        instance.push_str(" (an instance connection stayed open)");
    }
    Outcome { client, instance }
}

/// The instance's bytes as compared: escaped, with a chunked body shown
/// decoded (`<chunked:body>`) when `want` says so, or `<bad chunks:...>`
/// when the door's chunks were not canonical.
fn shown(bytes: &[u8], want: &Want) -> String {
    let Want::Chunked(head, _) = want else {
        return bytes.escape_ascii().to_string();
    };
    let Some(rest) = bytes.strip_prefix(&head[..]) else {
        return bytes.escape_ascii().to_string();
    };
    let mut at = 0;
    let mut body = Vec::new();
    let mut bad = None;
    loop {
        let Some(line) = find(&rest[at..], b"\r\n") else {
            bad = Some("unterminated");
            break;
        };
        let text = &rest[at..at + line];
        let canonical = !text.is_empty()
            && text.iter().all(|b| b"0123456789abcdef".contains(b))
            && (text == b"0" || text[0] != b'0');
        let Some(size) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .filter(|_| canonical)
        else {
            bad = Some("size line");
            break;
        };
        at += line + 2;
        if size == 0 {
            if rest[at..].starts_with(b"\r\n") {
                at += 2;
            } else {
                bad = Some("trailer or no end");
            }
            break;
        }
        if rest.len() < at + size + 2 || &rest[at + size..at + size + 2] != b"\r\n" {
            bad = Some("chunk data");
            break;
        }
        body.extend_from_slice(&rest[at..at + size]);
        at += size + 2;
    }
    let after = &rest[at.min(rest.len())..];
    match bad {
        Some(why) => format!(
            "{}<bad chunks ({why}): {}>",
            head.escape_ascii(),
            rest.escape_ascii()
        ),
        None => format!(
            "{}<chunked:{}>{}",
            head.escape_ascii(),
            body.escape_ascii(),
            after.escape_ascii()
        ),
    }
}

/// What `vector` must give.
fn expected(vector: &Vector) -> Outcome {
    let open = vector.client.ends_with("| open");
    let follow = if open { FOLLOW_UP_FORWARDED } else { b"" };
    let instance = match &vector.instance {
        Want::Nothing => follow.escape_ascii().to_string(),
        Want::Exact(bytes) => [&bytes[..], follow].concat().escape_ascii().to_string(),
        Want::Chunked(head, body) => format!(
            "{}<chunked:{}>{}",
            head.escape_ascii(),
            body.escape_ascii(),
            follow.escape_ascii()
        ),
    };
    Outcome {
        client: vector.client.clone(),
        instance,
    }
}

#[test]
fn the_front_door_cannot_be_desynchronised() {
    let agent = Agent::start();
    let records = tempfile::tempdir().expect("temp dir");
    let env = format!("RECORD_DIR = \"{}\"", records.path().display());
    let spec = agent.command_spec("raw", &raw_instance(), &env);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["run", "--spec", spec.to_str().expect("utf-8 path")];
    let sets = [
        format!("port={port}"),
        "replicas=1".to_string(),
        "guardrails.max-surge=100%".to_string(),
        "traffic.idle-timeout=60s".to_string(),
        "traffic.head-timeout=60s".to_string(),
    ];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let run = agent.rollout(&args);
    assert_eq!(run.code, 0, "{run:#?}");

    let only = std::env::var("FRAMING_ONLY").unwrap_or_default();
    let verbose = std::env::var_os("FRAMING_VERBOSE").is_some_and(|v| v == "1");
    let mut record = Record {
        dir: records.path().to_path_buf(),
        seen: BTreeMap::new(),
    };
    let all = vectors(&addr);
    let mut names = std::collections::HashSet::new();
    for v in &all {
        assert!(names.insert(v.name.clone()), "two vectors named {}", v.name);
    }
    let chosen: Vec<&Vector> = all.iter().filter(|v| v.name.contains(&only)).collect();
    assert!(
        !chosen.is_empty(),
        "no vector matches FRAMING_ONLY={only:?}"
    );
    let mut failed = Vec::new();
    for vector in &chosen {
        let got = exercise(vector, &addr, &mut record);
        let want = expected(vector);
        let ok = got.client == want.client && got.instance == want.instance;
        if verbose || !ok {
            let mark = if ok { "ok  " } else { "FAIL" };
            let text = format!(
                "{mark} {name}\n  sent:            {sent}\n  client expected: {wc}\n  client got:      {gc}\n  \
                 instance expected: {wi}\n  instance got:      {gi}",
                name = vector.name,
                sent = shorten(&vector.send.escape_ascii().to_string()),
                wc = want.client,
                gc = got.client,
                wi = shorten(&want.instance),
                gi = shorten(&got.instance),
            );
            if verbose {
                eprintln!("{text}");
            }
            if !ok {
                failed.push(text);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} framing vectors failed:\n{}",
        failed.len(),
        chosen.len(),
        failed.join("\n")
    );
    if verbose {
        eprintln!("{} framing vectors passed", chosen.len());
    }
}

/// `text`, or its start and end when it is long.
fn shorten(text: &str) -> String {
    match text.len() > 600 && text.is_ascii() {
        true => format!("{} [...] {}", &text[..300], &text[text.len() - 200..]),
        false => text.to_string(),
    }
}

/// Every vector; `door` is the front door's address (the `host` of an
/// HTTP/1.0 request that names none).
fn vectors(door: &str) -> Vec<Vector> {
    [
        basics(door),
        smuggling(),
        transfer_encodings(),
        content_lengths(),
        connection_options(),
        head_syntax(),
        chunked_bodies(),
        expect_and_pipelining(),
        targets_and_hosts(door),
        limits(),
        answers(),
    ]
    .concat()
}

/// `POST / HTTP/1.1` with `Host: h`, `fields` (whole lines) and `body`.
fn post(fields: &str, body: &str) -> String {
    format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n{body}")
}

/// A chunked `POST /` with `body` (the chunks as sent).
fn post_chunked(body: &str) -> String {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// The head the instance gets for a chunked `POST /` with host `h`.
const CHUNKED_HEAD: &str = "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n";

/// The head and body the instance gets for a `POST /` of `body`.
fn posted(body: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn basics(door: &str) -> Vec<Vector> {
    vec![
        taken(
            "basic/get",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        taken(
            "basic/post-length",
            post("Content-Length: 5\r\n", "hello"),
            posted("hello"),
        ),
        taken_chunked(
            "basic/post-chunked",
            post_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            CHUNKED_HEAD,
            "hello world",
        ),
        taken(
            "basic/canonical-order",
            "GET /p?q=1 HTTP/1.1\r\nX-A: 1\r\nHost: h\r\nX-B: 2\r\n\r\n",
            "GET /p?q=1 HTTP/1.1\r\nhost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
        ),
        taken(
            "basic/hop-by-hop-removed",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x-t\r\nProxy-Connection: keep-alive\r\n\
             Upgrade: h2c\r\nX-End: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\nX-End: 1\r\n\r\n",
        ),
        taken(
            "basic/http10-keep-alive",
            "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        taken(
            "basic/http10-closes",
            "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        taken(
            "basic/http10-no-host",
            "GET / HTTP/1.0\r\n\r\n",
            format!("GET / HTTP/1.1\r\nhost: {door}\r\n\r\n"),
        )
        .client(&format!("{OK} | closed")),
        taken(
            "basic/connection-close",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        // RFC 9112 2.2: a server SHOULD ignore an empty line before a request.
        taken(
            "basic/leading-crlf",
            "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
    ]
}

/// CL.TE and TE.CL: a request both framings could delimit.
fn smuggling() -> Vec<Vector> {
    let smuggled = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n";
    let inner = "GET /admin HTTP/1.1\r\nHost: h\r\n\r\n";
    vec![
        refused(
            "smuggle/cl-te",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nG",
            ),
            400,
        ),
        refused(
            "smuggle/te-cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                "5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
            ),
            400,
        ),
        refused(
            "smuggle/cl-te-get",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    smuggled.len()
                ),
                smuggled,
            ),
            400,
        ),
        refused(
            "smuggle/cl-0-te",
            post(
                "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            400,
        ),
        refused(
            "smuggle/te-obfuscated-cl",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n",
                "hello",
            ),
            400,
        ),
        // Not Transfer-Encoding, but a server that folds `_` to `-` would
        // take it for one: not forwarded, and (the second opinion finds it
        // ambiguous) the connections are used once. The body is the 5
        // bytes Content-Length says.
        taken(
            "smuggle/transfer_encoding-underscore",
            post(
                "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n",
                "hello",
            ),
            "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .client(&format!("{OK} | closed")),
        // No length at all: no body. The second opinion finds the
        // lookalike ambiguous: the connection is used once, so what
        // follows is never read as a request.
        taken(
            "smuggle/transfer_encoding-alone",
            post("Transfer_Encoding: chunked\r\n", "0\r\n\r\n"),
            "POST / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        taken(
            "smuggle/content-length-double-hyphen",
            post("Content--Length: 5\r\n", ""),
            "POST / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        taken(
            "smuggle/transfer-encoding-letter-for-hyphen",
            post("TransferXEncoding: chunked\r\n", ""),
            "POST / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        taken(
            "smuggle/host-lookalike",
            post("Ho-st: evil\r\nX_Forwarded_Host: evil\r\n", ""),
            "POST / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        // The instance answers without `connection: close` and keeps its
        // connection open: the door must still not pool it.
        taken(
            "smuggle/get-with-a-body-instance-keeps-alive",
            format!("GET /raw/{KEEP_OPEN_OK} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
            format!(
                "GET /raw/{KEEP_OPEN_OK} HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            ),
        )
        .client(&format!("{OK} | closed")),
        // h2c would carry requests past the door's routing: not offered.
        taken(
            "smuggle/h2c-upgrade-not-offered",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        taken(
            "smuggle/get-with-a-body-uses-connections-once",
            "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            "GET / HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .client(&format!("{OK} | closed")),
        refused(
            "smuggle/te-space-before-colon",
            post(
                "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                "hello",
            ),
            400,
        ),
        refused(
            "smuggle/cl-space-before-colon",
            post(
                "Content-Length : 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        // A chunked body whose data looks like a request: it is data.
        taken_chunked(
            "smuggle/request-inside-chunk",
            post_chunked(&format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len())),
            CHUNKED_HEAD,
            inner,
        ),
        // A length covering what looks like a second request: it is body.
        taken(
            "smuggle/request-inside-length",
            post(&format!("Content-Length: {}\r\n", inner.len()), inner),
            posted(inner),
        ),
    ]
}

/// Transfer-Encoding mutations (smuggler's and the garden's).
fn transfer_encodings() -> Vec<Vector> {
    let chunked = |name: &str, field: &str| {
        taken_chunked(
            name,
            post(field, "5\r\nhello\r\n0\r\n\r\n"),
            CHUNKED_HEAD,
            "hello",
        )
    };
    let refused_te = |name: &str, field: &str, status| {
        refused(name, post(field, "5\r\nhello\r\n0\r\n\r\n"), status)
    };
    vec![
        chunked("te/tab-ows", "Transfer-Encoding:\tchunked\r\n"),
        chunked("te/trailing-ows", "Transfer-Encoding: chunked \t\r\n"),
        chunked("te/uppercase", "TRANSFER-ENCODING: CHUNKED\r\n"),
        // Empty list elements are allowed (RFC 9110 5.6.1), but the
        // second opinion finds them severe: refused.
        refused_te(
            "te/empty-list-elements",
            "Transfer-Encoding: , chunked,\r\n",
            400,
        ),
        chunked(
            "te/named-in-connection",
            "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
        ),
        refused_te(
            "te/chunked-identity",
            "Transfer-Encoding: chunked , identity\r\n",
            501,
        ),
        refused_te(
            "te/gzip-chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            501,
        ),
        refused_te("te/identity", "Transfer-Encoding: identity\r\n", 501),
        refused_te("te/xchunked", "Transfer-Encoding: xchunked\r\n", 501),
        refused_te("te/chunkedx", "Transfer-Encoding: chunked-x\r\n", 501),
        refused_te("te/quoted", "Transfer-Encoding: \"chunked\"\r\n", 501),
        refused_te("te/parameter", "Transfer-Encoding: chunked;q=1\r\n", 501),
        refused_te("te/nbsp", "Transfer-Encoding: chunked\u{a0}\r\n", 501),
        refused_te(
            "te/vertical-tab",
            "Transfer-Encoding: \u{b}chunked\r\n",
            400,
        ),
        refused_te("te/form-feed", "Transfer-Encoding: chunked\u{c}\r\n", 400),
        refused_te(
            "te/twice-one-line",
            "Transfer-Encoding: chunked, chunked\r\n",
            400,
        ),
        refused_te(
            "te/twice-two-lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        refused_te(
            "te/chunked-then-identity-line",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            501,
        ),
        refused_te(
            "te/identity-line-then-chunked",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            501,
        ),
        refused_te("te/empty", "Transfer-Encoding:\r\n", 400),
        refused_te("te/only-commas", "Transfer-Encoding: , ,\r\n", 400),
        refused_te("te/obs-fold", "Transfer-Encoding:\r\n chunked\r\n", 400),
        refused_te(
            "te/obs-fold-after",
            "Transfer-Encoding: chunked\r\n ,identity\r\n",
            400,
        ),
        refused_te(
            "te/leading-space-name",
            "X: 1\r\n Transfer-Encoding: chunked\r\n",
            400,
        ),
        refused(
            "te/http10",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
    ]
}

/// Content-Length, valid and not.
fn content_lengths() -> Vec<Vector> {
    let length = |name: &str, value: &str| {
        taken(
            name,
            post(&format!("Content-Length:{value}\r\n"), "hello"),
            posted("hello"),
        )
    };
    let bad = |name: &str, fields: &str| refused(name, post(fields, "hello"), 400);
    vec![
        length("cl/ows", "  5  "),
        length("cl/tab-ows", "\t5\t"),
        length("cl/leading-zeros", " 0005"),
        length("cl/named-in-connection", " 5\r\nConnection: Content-Length"),
        taken(
            "cl/zero",
            post("Content-Length: 0\r\n", ""),
            "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
        ),
        bad("cl/plus", "Content-Length: +5\r\n"),
        bad("cl/minus", "Content-Length: -5\r\n"),
        bad("cl/list-equal", "Content-Length: 5,5\r\n"),
        bad("cl/list-spaced", "Content-Length: 5, 5\r\n"),
        bad("cl/list-trailing-comma", "Content-Length: 5,\r\n"),
        bad(
            "cl/two-lines-equal",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
        ),
        bad(
            "cl/two-lines-differ",
            "Content-Length: 5\r\nContent-Length: 3\r\n",
        ),
        bad("cl/space-inside", "Content-Length: 5 5\r\n"),
        bad("cl/nbsp-after", "Content-Length: 5\u{a0}\r\n"),
        bad("cl/nbsp-before", "Content-Length: \u{a0}5\r\n"),
        bad("cl/hex", "Content-Length: 0x5\r\n"),
        bad("cl/exponent", "Content-Length: 5e0\r\n"),
        bad("cl/empty", "Content-Length:\r\n"),
        bad(
            "cl/overflow-by-one",
            "Content-Length: 18446744073709551616\r\n",
        ),
        bad(
            "cl/huge",
            "Content-Length: 99999999999999999999999999999999\r\n",
        ),
        bad("cl/arabic-digit", "Content-Length: \u{665}\r\n"),
        bad("cl/obs-fold", "Content-Length:\r\n 5\r\n"),
        bad("cl/vertical-tab", "Content-Length: 5\u{b}\r\n"),
    ]
}

/// Connection can name no framing or routing field.
fn connection_options() -> Vec<Vector> {
    vec![
        taken(
            "connection/content-length",
            post(
                "Connection: Content-Length\r\nContent-Length: 5\r\n",
                "hello",
            ),
            posted("hello"),
        ),
        taken_chunked(
            "connection/transfer-encoding",
            post(
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            CHUNKED_HEAD,
            "hello",
        ),
        taken(
            "connection/host",
            "GET / HTTP/1.1\r\nConnection: Host\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        taken(
            "connection/all-three",
            post(
                "Connection: host, content-length, transfer-encoding\r\nContent-Length: 5\r\n",
                "hello",
            ),
            posted("hello"),
        ),
        taken(
            "connection/names-a-field",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\nX-Kept: 2\r\n\r\n",
        ),
        refused(
            "connection/not-a-token",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n",
            400,
        ),
    ]
}

/// Bare CR, bare LF, NUL, obs-fold and invalid names in a head.
fn head_syntax() -> Vec<Vector> {
    let bad = |name: &str, text: &str| refused(name, text, 400);
    vec![
        // RFC 9112 2.2: a bare LF may end a head line.
        taken(
            "head/bare-lf-lines",
            "GET / HTTP/1.1\nHost: h\nX: 1\n\n",
            "GET / HTTP/1.1\r\nhost: h\r\nX: 1\r\n\r\n",
        ),
        taken(
            "head/bare-lf-mixed",
            "POST / HTTP/1.1\r\nHost: h\nContent-Length: 5\r\n\nhello",
            posted("hello"),
        ),
        bad(
            "head/bare-cr-value",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        ),
        bad(
            "head/bare-cr-line-end",
            "GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
        ),
        bad(
            "head/bare-cr-request-line",
            "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "head/bare-cr-hides-cl",
            "POST / HTTP/1.1\r\nHost: h\r\nX: 1\rContent-Length: 5\r\n\r\nhello",
        ),
        bad(
            "head/nul-value",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
        ),
        bad(
            "head/nul-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX\0: 1\r\n\r\n",
        ),
        bad("head/nul-target", "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"),
        bad(
            "head/obs-fold",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        ),
        bad(
            "head/obs-fold-tab",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
        ),
        bad(
            "head/obs-fold-host",
            "GET / HTTP/1.1\r\nHost: h\r\n evil\r\n\r\n",
        ),
        bad(
            "head/space-before-colon",
            "GET / HTTP/1.1\r\nHost: h\r\nX : 1\r\n\r\n",
        ),
        bad(
            "head/tab-before-colon",
            "GET / HTTP/1.1\r\nHost: h\r\nX\t: 1\r\n\r\n",
        ),
        bad(
            "head/space-in-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n",
        ),
        bad(
            "head/quote-in-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX\"Y: 1\r\n\r\n",
        ),
        bad(
            "head/paren-in-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX(Y): 1\r\n\r\n",
        ),
        bad(
            "head/at-in-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n",
        ),
        bad(
            "head/empty-name",
            "GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n",
        ),
        bad("head/no-colon", "GET / HTTP/1.1\r\nHost: h\r\nX\r\n\r\n"),
        bad(
            "head/del-in-name",
            "GET / HTTP/1.1\r\nHost: h\r\nX\x7f: 1\r\n\r\n",
        ),
        bad(
            "head/non-ascii-name",
            "GET / HTTP/1.1\r\nHost: h\r\n\u{e9}: 1\r\n\r\n",
        ),
        bad("head/bad-method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n"),
        bad("head/http2-version", "GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        bad("head/http12-version", "GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
        bad(
            "head/lowercase-version",
            "GET / http/1.1\r\nHost: h\r\n\r\n",
        ),
        bad("head/two-spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
        bad("head/tls-hello", "\x16\x03\x01\x00\x05hello\r\n\r\n"),
    ]
}

/// Chunk sizes, extensions, line ends and trailers.
fn chunked_bodies() -> Vec<Vector> {
    let good = |name: &str, body: &str, data: &str| {
        taken_chunked(name, post_chunked(body), CHUNKED_HEAD, data)
    };
    let bad = |name: &str, body: &str| refused(name, post_chunked(body), 400);
    vec![
        good(
            "chunk/uppercase-hex",
            "A\r\n0123456789\r\n0\r\n\r\n",
            "0123456789",
        ),
        good(
            "chunk/leading-zeros",
            "0005\r\nhello\r\n000\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/many-small",
            "1\r\nh\r\n1\r\ne\r\n1\r\nl\r\n1\r\nl\r\n1\r\no\r\n0\r\n\r\n",
            "hello",
        ),
        good("chunk/empty-body", "0\r\n\r\n", ""),
        good("chunk/extension", "5;ext=1\r\nhello\r\n0\r\n\r\n", "hello"),
        good(
            "chunk/extension-quoted",
            "5;a=\"q\\\"x;y\"\r\nhello\r\n0\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/extension-bws",
            "5 ; a = b ;c\r\nhello\r\n0\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/extension-last-chunk",
            "5\r\nhello\r\n0;last=1\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/trailer-dropped",
            "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/trailer-content-length",
            "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
            "hello",
        ),
        good(
            "chunk/trailer-transfer-encoding",
            "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\n",
            "hello",
        ),
        bad("chunk/plus", "+5\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/plus-hex", "+a\r\n0123456789\r\n0\r\n\r\n"),
        bad("chunk/minus", "-5\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/leading-space", " a\r\n0123456789\r\n0\r\n\r\n"),
        bad("chunk/trailing-space", "5 \r\nhello\r\n0\r\n\r\n"),
        bad("chunk/0x-prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/empty-size", "\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/overflow", "10000000000000000\r\nhello\r\n0\r\n\r\n"),
        bad(
            "chunk/overflow-long",
            "fffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        bad("chunk/bare-lf-size", "5\nhello\r\n0\r\n\r\n"),
        bad("chunk/bare-lf-after-data", "5\r\nhello\n0\r\n\r\n"),
        bad("chunk/bare-lf-last", "5\r\nhello\r\n0\n\n"),
        bad("chunk/bare-cr-size", "5\rhello\r\n0\r\n\r\n"),
        bad("chunk/bare-cr-extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/data-too-long", "5\r\nhelloXX\r\n0\r\n\r\n"),
        bad("chunk/data-too-short", "5\r\nhell\r\n0\r\n\r\n"),
        bad("chunk/extension-empty", "5;\r\nhello\r\n0\r\n\r\n"),
        bad("chunk/extension-no-value", "5;a=\r\nhello\r\n0\r\n\r\n"),
        bad(
            "chunk/extension-open-quote",
            "5;a=\"x\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk/extension-space-in-value",
            "5;a=b c\r\nhello\r\n0\r\n\r\n",
        ),
        bad("chunk/extension-nul", "5;a=\0\r\nhello\r\n0\r\n\r\n"),
        bad(
            "chunk/trailer-no-colon",
            "5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        ),
        bad(
            "chunk/trailer-bad-name",
            "5\r\nhello\r\n0\r\nbad name: 1\r\n\r\n",
        ),
        bad(
            "chunk/trailer-obs-fold",
            "5\r\nhello\r\n0\r\nX: 1\r\n folded\r\n\r\n",
        ),
        bad("chunk/trailer-bare-lf", "5\r\nhello\r\n0\r\nX: 1\n\r\n"),
        // The head and the first chunk are already at the instance when the
        // bad size line comes: the instance connection is closed without a
        // last chunk, so it never sees a whole request.
        refused(
            "chunk/error-after-streaming",
            post_chunked("5\r\nhello\r\n"),
            400,
        )
        .then(Then::AfterForwarded(b"zz\r\nworld\r\n0\r\n\r\n".to_vec()))
        .instance(Want::Exact(
            format!("{CHUNKED_HEAD}5\r\nhello\r\n").into_bytes(),
        )),
        refused(
            "chunk/bare-lf-after-streaming",
            post_chunked("5\r\nhello\r\n"),
            400,
        )
        .then(Then::AfterForwarded(b"0\n\n".to_vec()))
        .instance(Want::Exact(
            format!("{CHUNKED_HEAD}5\r\nhello\r\n").into_bytes(),
        )),
    ]
}

/// Expect: 100-continue, and requests sent back to back.
fn expect_and_pipelining() -> Vec<Vector> {
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    let got = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: h\r\n\r\n");
    vec![
        // The body came with the head: nothing to wait for, no 100.
        taken(
            "expect/early-body",
            post("Expect: 100-continue\r\nContent-Length: 5\r\n", "hello"),
            posted("hello"),
        ),
        taken(
            "expect/waits-for-100",
            post("Expect: 100-continue\r\nContent-Length: 5\r\n", ""),
            posted("hello"),
        )
        .client(&format!("100 {OK} | open"))
        .then(Then::AfterContinue(b"hello".to_vec())),
        // RFC 9110 10.1.1: the expectation is case-insensitive.
        taken(
            "expect/case-insensitive",
            post("Expect: 100-Continue\r\nContent-Length: 5\r\n", ""),
            posted("hello"),
        )
        .client(&format!("100 {OK} | open"))
        .then(Then::AfterContinue(b"hello".to_vec())),
        taken_chunked(
            "expect/chunked-waits-for-100",
            post("Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", ""),
            CHUNKED_HEAD,
            "hello",
        )
        .client(&format!("100 {OK} | open"))
        .then(Then::AfterContinue(b"5\r\nhello\r\n0\r\n\r\n".to_vec())),
        taken(
            "expect/no-body",
            "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        refused(
            "expect/other",
            post("Expect: 200-ok\r\nContent-Length: 5\r\n", "hello"),
            417,
        ),
        refused(
            "expect/twice",
            post(
                "Expect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 5\r\n",
                "hello",
            ),
            400,
        ),
        taken(
            "pipeline/two-gets",
            format!("{}{}", get("/1"), get("/2")),
            format!("{}{}", got("/1"), got("/2")),
        )
        .client(&format!("{OK} {OK} | open")),
        taken(
            "pipeline/three-gets",
            format!("{}{}{}", get("/1"), get("/2"), get("/3")),
            format!("{}{}{}", got("/1"), got("/2"), got("/3")),
        )
        .client(&format!("{OK} {OK} {OK} | open")),
        taken(
            "pipeline/post-then-get",
            format!("{}{}", post("Content-Length: 5\r\n", "hello"), get("/2")),
            format!("{}{}", posted("hello"), got("/2")),
        )
        .client(&format!("{OK} {OK} | open")),
        taken(
            "pipeline/chunked-then-get",
            format!("{}{}", post_chunked("5\r\nhello\r\n0\r\n\r\n"), get("/2")),
            format!("{CHUNKED_HEAD}5\r\nhello\r\n0\r\n\r\n{}", got("/2")),
        )
        .client(&format!("{OK} {OK} | open")),
        taken(
            "pipeline/trailer-then-get",
            format!(
                "{}{}",
                post_chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
                get("/2")
            ),
            format!("{CHUNKED_HEAD}5\r\nhello\r\n0\r\n\r\n{}", got("/2")),
        )
        .client(&format!("{OK} {OK} | open")),
        taken(
            "pipeline/then-malformed",
            format!("{}GET / HTTP/1.1\r\nHost: h\r\nX : 1\r\n\r\n", get("/1")),
            got("/1"),
        )
        .client(&format!("{OK} 400 | closed")),
        taken(
            "pipeline/close-stops-the-rest",
            format!(
                "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n{}",
                get("/2")
            ),
            got("/1"),
        )
        .client(&format!("{OK} | closed")),
    ]
}

/// Request targets and Host.
fn targets_and_hosts(door: &str) -> Vec<Vector> {
    let bad = |name: &str, text: &str| refused(name, text, 400);
    vec![
        taken(
            "target/absolute-replaces-host",
            "GET http://a.test/p?q HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /p?q HTTP/1.1\r\nhost: a.test\r\n\r\n",
        ),
        taken(
            "target/absolute-no-path",
            "GET http://a.test HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n",
        ),
        taken(
            "target/absolute-https-port",
            "GET https://a.test:8443/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /x HTTP/1.1\r\nhost: a.test:8443\r\n\r\n",
        ),
        taken(
            "target/absolute-scheme-case",
            "GET HTTP://a.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n",
        ),
        taken(
            "target/options-star",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nhost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-userinfo",
            "GET http://user@a.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-password",
            "GET http://u:p@a.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-ftp",
            "GET ftp://a.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-ws",
            "GET ws://a.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-empty-authority",
            "GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/absolute-bad-port",
            "GET http://a.test:x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad(
            "target/star-not-options",
            "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad("target/fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"),
        bad("target/no-slash", "GET a HTTP/1.1\r\nHost: h\r\n\r\n"),
        bad(
            "target/non-ascii",
            "GET /\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        bad("host/none", "GET / HTTP/1.1\r\n\r\n"),
        bad("host/none-absolute", "GET http://a.test/ HTTP/1.1\r\n\r\n"),
        bad("host/two", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        bad(
            "host/two-equal",
            "GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
        ),
        bad(
            "host/two-http10",
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        bad("host/empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        bad("host/space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        bad("host/slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        bad("host/userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
        bad("host/bad-port", "GET / HTTP/1.1\r\nHost: a:port\r\n\r\n"),
        bad("host/list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
        bad(
            "host/invalid-with-absolute",
            "GET http://a.test/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        ),
        taken(
            "host/port",
            "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: h:8080\r\n\r\n",
        ),
        taken(
            "host/ipv6",
            "GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n",
        ),
        taken(
            "host/http10-absolute",
            "GET http://a.test/x HTTP/1.0\r\n\r\n",
            "GET /x HTTP/1.1\r\nhost: a.test\r\n\r\n",
        )
        .client(&format!("{OK} | closed")),
        taken(
            "host/http10-keep-alive-no-host",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            format!("GET / HTTP/1.1\r\nhost: {door}\r\n\r\n"),
        ),
    ]
}

/// Size limits and methods the door does not serve.
fn limits() -> Vec<Vector> {
    // Exactly the largest head, not ended yet: the door has read all of it
    // when it refuses (no unread bytes, so its close is no reset).
    let mut endless = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    while endless.len() < 64 * 1024 {
        endless.extend_from_slice(b"x-a: b\r\n");
    }
    endless.truncate(64 * 1024);
    let many: String = (0..129).map(|i| format!("x-{i}: 1\r\n")).collect();
    // One field filling the largest head, not ended yet.
    let start = "GET / HTTP/1.1\r\nHost: h\r\nx: ";
    let huge_field = format!("{start}{}", "a".repeat(64 * 1024 - start.len()));
    vec![
        refused("limit/head-too-large", endless, 431),
        refused("limit/field-too-large", huge_field.as_bytes(), 431),
        refused(
            "limit/too-many-fields",
            format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n"),
            431,
        ),
        refused(
            "limit/target-too-long",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000)),
            414,
        ),
        taken(
            "limit/target-at-limit",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(8191)),
            format!("GET /{} HTTP/1.1\r\nhost: h\r\n\r\n", "a".repeat(8191)),
        ),
        refused(
            "limit/connect",
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            405,
        ),
    ]
}

/// What the instance answers: the door must frame it for the client, or
/// answer 502 itself (or cut the client off once the head went out).
fn answers() -> Vec<Vector> {
    let ok = |head: &str, body: &str| format!("HTTP/1.1 200 OK\r\n{head}\r\n{body}");
    vec![
        answered(
            "answer/length",
            ok("Content-Length: 3\r\n", "abc"),
            "200/cl/abc | open",
        ),
        answered(
            "answer/length-named-in-connection",
            ok("Connection: Content-Length\r\nContent-Length: 3\r\n", "abc"),
            "200/cl/abc | open",
        ),
        answered(
            "answer/length-then-garbage",
            ok(
                "Content-Length: 3\r\n",
                "abcHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!",
            ),
            "200/cl/abc | open",
        ),
        answered(
            "answer/length-padded",
            ok("Content-Length: 003\r\n", "abc"),
            "200/cl/abc | open",
        ),
        answered(
            "answer/length-twice",
            ok("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-list",
            ok("Content-Length: 3, 3\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-plus",
            ok("Content-Length: +3\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-minus",
            ok("Content-Length: -1\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-nbsp",
            ok("Content-Length: 3\u{a0}\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-hex",
            ok("Content-Length: 0x3\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-overflow",
            ok("Content-Length: 18446744073709551616\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/length-short",
            ok("Content-Length: 10\r\n", "abc"),
            "200/cl/abc/cut | closed",
        ),
        answered(
            "answer/te-and-length",
            ok(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            "502 | open",
        ),
        answered(
            "answer/te-gzip",
            ok("Transfer-Encoding: gzip\r\n", "abc"),
            "502 | open",
        ),
        answered(
            "answer/te-twice",
            ok(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            "502 | open",
        ),
        answered(
            "answer/te-http10",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "502 | open",
        ),
        answered(
            "answer/chunked",
            ok(
                "Transfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            ),
            "200/chunked/abcde | open",
        ),
        answered(
            "answer/chunked-extensions-trailers",
            ok(
                "Transfer-Encoding: chunked\r\n",
                "3;x=1\r\nabc\r\n0\r\nContent-Length: 9\r\n\r\n",
            ),
            "200/chunked/abc | open",
        ),
        answered(
            "answer/chunked-named-in-connection",
            ok(
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            "200/chunked/abc | open",
        ),
        // The head is not out yet when the first size line is bad.
        answered(
            "answer/chunk-size-bad",
            ok("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"),
            "502 | open",
        ),
        answered(
            "answer/chunk-size-plus",
            ok("Transfer-Encoding: chunked\r\n", "+3\r\nabc\r\n0\r\n\r\n"),
            "502 | open",
        ),
        answered(
            "answer/chunk-bare-lf",
            ok("Transfer-Encoding: chunked\r\n", "3\nabc\r\n0\r\n\r\n"),
            "502 | open",
        ),
        answered(
            "answer/chunk-overflow",
            ok(
                "Transfer-Encoding: chunked\r\n",
                "10000000000000000\r\nabc\r\n0\r\n\r\n",
            ),
            "502 | open",
        ),
        answered(
            "answer/chunked-cut",
            ok("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n"),
            "200/chunked/abc/cut | closed",
        ),
        answered("answer/no-length", ok("", "abc"), "200/chunked/abc | open"),
        answered("answer/no-length-empty", ok("", ""), "200/chunked/ | open"),
        answered(
            "answer/http10-length",
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "200/cl/hi | open",
        ),
        answered(
            "answer/bare-lf",
            "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
            "200/cl/hi | open",
        ),
        answered(
            "answer/204-with-length",
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            "204/none/ | open",
        ),
        answered(
            "answer/100-then-200",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "200/cl/hi | open",
        ),
        answered(
            "answer/103-then-200",
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "200/cl/hi | open",
        ),
        answered(
            "answer/101-not-asked",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "502 | open",
        ),
        answered(
            "answer/status-600",
            "HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n",
            "502 | open",
        ),
        answered(
            "answer/status-099",
            "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
            "502 | open",
        ),
        answered(
            "answer/status-1000",
            "HTTP/1.1 1000 Big\r\nContent-Length: 0\r\n\r\n",
            "502 | open",
        ),
        answered(
            "answer/obs-fold",
            ok("X: a\r\n b\r\nContent-Length: 2\r\n", "hi"),
            "502 | open",
        ),
        answered(
            "answer/bare-cr",
            ok("X: a\rb\r\nContent-Length: 2\r\n", "hi"),
            "502 | open",
        ),
        answered(
            "answer/nul",
            ok("X: a\0\r\nContent-Length: 2\r\n", "hi"),
            "502 | open",
        ),
        answered(
            "answer/space-before-colon",
            ok("Content-Length : 2\r\n", "hi"),
            "502 | open",
        ),
        answered(
            "answer/not-http",
            "SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "502 | open",
        ),
        answered("answer/nothing", "", "502 | open"),
    ]
}
