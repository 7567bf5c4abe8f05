//! HTTP/1.1 on the wire (RFC 9112): the request the front door reads from
//! a client and writes to an instance, the answer it reads from the
//! instance and writes back, and how each body is delimited.
//!
//! Heads are parsed by httparse into fields borrowed from the read buffer
//! and rewritten straight into the bytes that go out: no header map is
//! built for a request or its answer. Pure functions over byte buffers, so
//! every case is unit-tested without a socket; [`super::downstream`] and
//! [`super::upstream`] drive them on connections.

use bytes::{Buf, Bytes, BytesMut};
use hyper::{Method, StatusCode};

use super::Sticky;

/// The largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a head.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// An instance answered something that is not HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed answer from the instance: {0}")]
pub struct Malformed(pub &'static str);

/// A client sent a request the front door will not forward; it is answered
/// with `status` and its connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {why}")]
pub struct BadRequest {
    /// 400, or 431 for a head too large.
    pub status: StatusCode,
    /// What is wrong with it.
    pub why: &'static str,
}

fn bad(why: &'static str) -> BadRequest {
    BadRequest {
        status: StatusCode::BAD_REQUEST,
        why,
    }
}

fn too_large(why: &'static str) -> BadRequest {
    BadRequest {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        why,
    }
}

/// Fields that belong to one connection, not to the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether field `name` is hop-by-hop, or named by the message's
/// `Connection` field (`listed`): either way it is not forwarded.
fn hop_by_hop(name: &str, listed: &[&[u8]]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || listed
            .iter()
            .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
}

/// The comma-separated tokens of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The fields of a head that say how its body is delimited and whether
/// its connection stays open.
struct Framed<'h> {
    /// `Content-Length`, if given (the same each time it is).
    length: Option<u64>,
    /// `Transfer-Encoding`: whether its last coding is chunked.
    chunked: Option<bool>,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// Other fields `Connection` names: hop-by-hop too.
    listed: Vec<&'h [u8]>,
    /// `Upgrade`, the protocols asked for or switched to.
    upgrade: Option<&'h [u8]>,
}

impl Framed<'_> {
    /// The protocols of an `Upgrade` field that `Connection` names.
    fn upgrade(&self) -> Option<&[u8]> {
        let named = self
            .listed
            .iter()
            .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        self.upgrade.filter(|_| named)
    }
}

/// Append the fields that switch a connection to `protocols`.
fn switch_fields(out: &mut Vec<u8>, protocols: &[u8]) {
    field(out, b"upgrade", protocols);
    out.extend_from_slice(b"connection: upgrade\r\n");
}

/// Read the framing fields of `headers`; `Err` names a conflicting or
/// invalid length.
fn framed<'h>(headers: &[httparse::Header<'h>]) -> Result<Framed<'h>, &'static str> {
    let mut f = Framed {
        length: None,
        chunked: None,
        close: false,
        keep_alive: false,
        listed: Vec::new(),
        upgrade: None,
    };
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("invalid content-length")?;
            if f.length.is_some_and(|l| l != n) {
                return Err("conflicting content-length fields");
            }
            f.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding says whether the body is chunked.
            let last = tokens(h.value).last();
            f.chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            f.upgrade = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else {
                    f.listed.push(token);
                }
            }
        }
    }
    Ok(f)
}

/// Why a head cannot be taken.
enum Unfit {
    /// Still incomplete at [`MAX_HEAD`] bytes.
    TooLarge,
    /// More than [`MAX_HEADERS`] fields.
    TooManyFields,
    /// Not HTTP/1.x.
    Unparsable,
}

/// The length of a head httparse `parsed` from `buffered` bytes;
/// `Ok(None)`: incomplete, more may come.
fn head_len(parsed: httparse::Result<usize>, buffered: usize) -> Result<Option<usize>, Unfit> {
    match parsed {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buffered >= MAX_HEAD => Err(Unfit::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Unfit::TooManyFields),
        Err(_) => Err(Unfit::Unparsable),
    }
}

/// Append `name: value\r\n`.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A request read from a client.
#[derive(Debug)]
pub struct RequestHead {
    /// Its head as it goes to an instance: `method target HTTP/1.1`, the
    /// client's fields (its `Host` included) minus hop-by-hop ones and
    /// `Expect` (the front door answers it), and `Transfer-Encoding:
    /// chunked` for a chunked body.
    pub outgoing: Bytes,
    /// Its method (whether the answer has a body depends on it).
    pub method: Method,
    /// How its body is delimited (`Length(0)`: none).
    pub body: Framing,
    /// HTTP/1.0: answered without chunked coding.
    pub http10: bool,
    /// The client keeps its connection open after the answer.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// Its sticky key, when the front door pins clients and it has one.
    pub sticky: Option<Vec<u8>>,
    /// It asks to switch the connection to another protocol (`Upgrade`,
    /// e.g. WebSocket): the instance's `101` makes it a tunnel.
    pub upgrade: bool,
}

/// Parse a client's request head from the front of `buf`, removing it.
/// `Ok(None)`: not complete yet.
pub fn request_head(
    buf: &mut BytesMut,
    sticky: Option<&Sticky>,
) -> Result<Option<RequestHead>, BadRequest> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match head_len(request.parse(buf), buf.len()) {
        Ok(Some(len)) => len,
        Ok(None) => return Ok(None),
        Err(Unfit::TooLarge) => return Err(too_large("request head too large")),
        Err(Unfit::TooManyFields) => return Err(too_large("too many header fields")),
        Err(Unfit::Unparsable) => return Err(bad("unparsable request head")),
    };
    let method = request.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method"))?;
    let target = origin_form(request.path.unwrap_or_default()).ok_or(bad("invalid target"))?;
    let http10 = request.version == Some(0);
    let headers = request.headers;
    let f = framed(headers).map_err(bad)?;
    let body = match (f.chunked, f.length) {
        (Some(_), Some(_)) => return Err(bad("both content-length and transfer-encoding")),
        (Some(true), None) => Framing::Chunked(Chunked::Size),
        (Some(false), None) => return Err(bad("transfer-encoding not ending in chunked")),
        (None, length) => Framing::Length(length.unwrap_or(0)),
    };
    let mut expect_continue = false;
    let mut out = Vec::with_capacity(len + 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if !hop_by_hop(h.name, &f.listed) {
            field(&mut out, h.name.as_bytes(), h.value);
        }
    }
    if matches!(body, Framing::Chunked(_)) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    let upgrade = f.upgrade().filter(|_| !http10);
    if let Some(protocols) = upgrade {
        switch_fields(&mut out, protocols);
    }
    out.extend_from_slice(b"\r\n");
    let sticky = sticky.and_then(|s| s.key(headers)).map(<[u8]>::to_vec);
    let head = RequestHead {
        outgoing: out.into(),
        method,
        body,
        http10,
        keep_alive: !f.close && (!http10 || f.keep_alive),
        expect_continue,
        sticky,
        upgrade: upgrade.is_some(),
    };
    buf.advance(len);
    Ok(Some(head))
}

/// The path and query of a request target: an origin-form target as it
/// is, an absolute-form one (`http://host/path`, as sent to a forward
/// proxy) without its scheme and authority, `*` (for `OPTIONS`) as it is.
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') || target == "*" {
        return Some(target);
    }
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    Some(rest.find('/').map_or("/", |at| &rest[at..]))
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Its status line and end-to-end fields on the wire, without the
    /// empty line that ends a head; `Content-Length` is among them when
    /// the instance sent one and the body is delimited by it.
    pub fields: Vec<u8>,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub reusable: bool,
}

/// Parse a response head from the front of `buf`, removing it. `Ok(None)`:
/// not complete yet. Interim (1xx) answers are skipped; a `101` is taken
/// when the request asked to `upgrade` (with the protocol switched to),
/// refused otherwise.
pub fn response_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Option<ResponseHead>, Malformed> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let len = match head_len(response.parse(buf), buf.len()) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(Unfit::TooLarge) => return Err(Malformed("response head too large")),
            Err(Unfit::TooManyFields) => return Err(Malformed("too many headers")),
            Err(Unfit::Unparsable) => return Err(Malformed("unparsable response head")),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Malformed("invalid status code"))?;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        if switching && !upgrade {
            return Err(Malformed(
                "101 Switching Protocols to a request that asked for no upgrade",
            ));
        }
        if status.is_informational() && !switching {
            buf.advance(len);
            continue;
        }
        let http10 = response.version == Some(0);
        let f = framed(response.headers).map_err(Malformed)?;
        let switched = match (switching, f.upgrade) {
            (false, _) => None,
            (true, Some(protocols)) => Some(protocols),
            (true, None) => return Err(Malformed("101 Switching Protocols without Upgrade")),
        };
        let bodiless = *method == Method::HEAD
            || switching
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = match (bodiless, f.chunked, f.length) {
            (true, _, _) => Framing::Length(0),
            (false, Some(true), _) => Framing::Chunked(Chunked::Size),
            // Another coding last: the body runs until the connection closes.
            (false, Some(false), _) => Framing::Close,
            (false, None, Some(n)) => Framing::Length(n),
            (false, None, None) => Framing::Close,
        };
        // A length next to chunked is a smuggling attempt, and one next to
        // a body that runs to the close says nothing: both are dropped.
        let drop_length = matches!(framing, Framing::Chunked(_) | Framing::Close);
        let mut out = Vec::with_capacity(len + 64);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(response.reason.unwrap_or_default().as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in response.headers.iter() {
            let dropped = drop_length && h.name.eq_ignore_ascii_case("content-length");
            if !dropped && !hop_by_hop(h.name, &f.listed) {
                field(&mut out, h.name.as_bytes(), h.value);
            }
        }
        if let Some(protocols) = switched {
            switch_fields(&mut out, protocols);
        }
        // HTTP/1.0 closes unless told to keep alive; HTTP/1.1 keeps alive
        // unless told to close. A switched connection is a tunnel.
        let reusable =
            !switching && !f.close && (!http10 || f.keep_alive) && framing != Framing::Close;
        buf.advance(len);
        return Ok(Some(ResponseHead {
            status,
            fields: out,
            framing,
            reusable,
        }));
    }
}

/// How an answer's body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// As the instance delimited it (by its `Content-Length`, or no body).
    AsIs,
    /// In chunks: its length is not known ahead.
    Chunked,
    /// Until the front door closes the connection (an HTTP/1.0 client).
    UntilClose,
}

/// The head of `answer` for a client (`http10`, wanting to `keep_alive`),
/// with `revision` (the `x-rollout-revision` field), into `out`; how its
/// body goes, and whether the client connection stays open after it.
pub fn answer_head(
    answer: &ResponseHead,
    revision: &[u8],
    http10: bool,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> (Relay, bool) {
    let relay = match answer.framing {
        Framing::Length(_) => Relay::AsIs,
        _ if http10 => Relay::UntilClose,
        _ => Relay::Chunked,
    };
    let keep_alive = keep_alive && relay != Relay::UntilClose;
    out.extend_from_slice(&answer.fields);
    field(out, b"x-rollout-revision", revision);
    if relay == Relay::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    match (keep_alive, http10) {
        (false, _) => out.extend_from_slice(b"connection: close\r\n"),
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, false) => {}
    }
    out.extend_from_slice(b"\r\n");
    (relay, keep_alive)
}

/// The head of a `101` answer for the client, with `revision` (the
/// `x-rollout-revision` field), into `out`: the connection is a tunnel
/// after it.
pub fn switch_head(answer: &ResponseHead, revision: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&answer.fields);
    field(out, b"x-rollout-revision", revision);
    out.extend_from_slice(b"\r\n");
}

/// The front door's own answer (`503`, `502`, `400`...) with a text body,
/// into `out`.
pub fn own_answer(status: StatusCode, text: &str, keep_alive: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    field(out, b"content-length", text.len().to_string().as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
}

/// The interim answer to a client that expects `100 Continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding, in this state.
    Chunked(Chunked),
    /// Everything until the instance closes the connection.
    Close,
}

/// Where a chunked body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

/// What decoding found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// More input is needed.
    More,
    /// The body is complete.
    End,
}

/// The position of the first CRLF in `buf`, refusing over-long lines.
fn line_end(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some(at)),
        None if buf.len() > MAX_LINE => Err(Malformed("chunk line too long")),
        None => Ok(None),
    }
}

impl Framing {
    /// Whether the body is known to be complete without reading.
    pub fn is_done(&self) -> bool {
        *self == Framing::Length(0)
    }

    /// Take the next piece of body from `buf`; `eof`: the instance closed
    /// the connection (nothing more will come).
    pub fn step(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Step, Malformed> {
        match self {
            Framing::Length(0) => Ok(Step::End),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return match eof {
                        true => Err(Malformed("body shorter than its content-length")),
                        false => Ok(Step::More),
                    };
                }
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                Ok(Step::Data(buf.split_to(n as usize).freeze()))
            }
            Framing::Close if !buf.is_empty() => Ok(Step::Data(buf.split().freeze())),
            Framing::Close => Ok(if eof { Step::End } else { Step::More }),
            Framing::Chunked(state) => match state.step(buf)? {
                Step::More if eof => Err(Malformed("chunked body cut short")),
                step => Ok(step),
            },
        }
    }
}

impl Chunked {
    /// Decode the next piece of a chunked body from `buf`.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(Step::More);
                    };
                    // Chunk extensions after `;` are ignored.
                    let digits = buf[..end]
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| !d.is_empty())
                        .and_then(|d| u64::from_str_radix(d, 16).ok())
                        .ok_or(Malformed("invalid chunk size"))?;
                    buf.advance(end + 2);
                    *self = match size {
                        0 => Chunked::Trailer,
                        n => Chunked::Data(n),
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = left.min(buf.len() as u64);
                    *self = match left - n {
                        0 => Chunked::DataEnd,
                        rest => Chunked::Data(rest),
                    };
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailer => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(Step::More);
                    };
                    // Trailer fields are not forwarded.
                    buf.advance(end + 2);
                    if end == 0 {
                        return Ok(Step::End);
                    }
                }
            }
        }
    }
}

/// Append `data` framed as one chunk of a chunked body (nothing for no
/// data: an empty chunk would end the body).
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> (ResponseHead, BytesMut) {
        let mut buf = BytesMut::from(text);
        let head = response_head(&mut buf, &method, false).unwrap().unwrap();
        (head, buf)
    }

    /// The whole body, fed `step` bytes at a time.
    fn body(
        framing: &mut Framing,
        rest: &[u8],
        step: usize,
        eof: bool,
    ) -> Result<Vec<u8>, Malformed> {
        let mut buf = BytesMut::new();
        let mut input = rest.chunks(step.max(1));
        let mut out = Vec::new();
        loop {
            match framing.step(&mut buf, eof && input.len() == 0)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End => return Ok(out),
                Step::More => match input.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None if eof => continue,
                    None => return Err(Malformed("test ran out of input")),
                },
            }
        }
    }

    /// The value of field `name` in an answer's head, if it is there.
    fn value(h: &ResponseHead, name: &str) -> Option<String> {
        let text = String::from_utf8(h.fields.clone()).unwrap();
        text.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
    }

    fn request(text: &str) -> Result<Option<RequestHead>, BadRequest> {
        request_head(&mut BytesMut::from(text), None)
    }

    #[test]
    fn a_request_head_drops_hop_by_hop_fields_and_keeps_host() {
        let mut buf = BytesMut::from(
            "POST http://example.test/a?b=1 HTTP/1.1\r\nHost: example.test\r\n\
             Connection: keep-alive, x-private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n\
             Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nX-One: 1\r\n\r\nnext",
        );
        let head = request_head(&mut buf, None).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(head.outgoing.to_vec()).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nHost: example.test\r\nX-One: 1\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.body, Framing::Chunked(Chunked::Size));
        assert!(head.expect_continue && head.keep_alive && !head.http10);
        assert_eq!(&buf[..], b"next", "the head is consumed, the body left");
    }

    #[test]
    fn a_request_says_how_long_its_body_is_and_whether_the_client_stays() {
        let head = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, Framing::Length(0));
        assert!(head.keep_alive);
        let head = request("PUT /x HTTP/1.1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n");
        let head = head.unwrap().unwrap();
        assert_eq!(head.body, Framing::Length(12));
        assert!(!head.keep_alive);
        assert!(String::from_utf8_lossy(&head.outgoing).contains("Content-Length: 12\r\n"));
        let head = request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(head.http10 && !head.keep_alive);
        let head = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(head.unwrap().unwrap().keep_alive);
        assert!(request("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn a_sticky_key_is_read_from_its_header_or_cookie() {
        let text = "GET / HTTP/1.1\r\nX-User: ann\r\nCookie: a=1; user=bob; c=3\r\n\r\n";
        let by_header = Sticky::Header(hyper::header::HeaderName::from_static("x-user"));
        let head = request_head(&mut BytesMut::from(text), Some(&by_header));
        assert_eq!(head.unwrap().unwrap().sticky.as_deref(), Some(&b"ann"[..]));
        let by_cookie = Sticky::Cookie("user".into());
        let head = request_head(&mut BytesMut::from(text), Some(&by_cookie));
        assert_eq!(head.unwrap().unwrap().sticky.as_deref(), Some(&b"bob"[..]));
        let missing = Sticky::Cookie("nobody".into());
        let head = request_head(&mut BytesMut::from(text), Some(&missing));
        assert!(head.unwrap().unwrap().sticky.is_none());
    }

    #[test]
    fn requests_that_cannot_be_framed_safely_are_refused() {
        for bad in [
            "GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET ftp://a/b HTTP/1.1\r\n\r\n",
            "\x16\x03\x01 TLS hello\r\n\r\n",
        ] {
            let refused = request(bad).err();
            assert_eq!(
                refused.map(|r| r.status),
                Some(StatusCode::BAD_REQUEST),
                "{bad:?}"
            );
        }
        let mut endless = BytesMut::from("GET / HTTP/1.1\r\n");
        endless.extend_from_slice(&b"x-a: b\r\n".repeat(MAX_HEAD / 8));
        let refused = request_head(&mut endless, None).err().unwrap();
        assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    /// The head `answer` gets for a client (`http10`, wanting to keep
    /// its connection): how its body goes, whether it stays, the text.
    fn for_client(answer: &str, http10: bool) -> (Relay, bool, String) {
        let (h, _) = head(answer, Method::GET);
        let mut out = Vec::new();
        let (relay, keep) = answer_head(&h, b"r1", http10, true, &mut out);
        (relay, keep, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_answer_head_tells_the_client_how_its_body_comes() {
        let (relay, keep, text) =
            for_client("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false);
        assert_eq!((relay, keep), (Relay::AsIs, true));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-rollout-revision: r1\r\n\r\n"
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (relay, keep, text) = for_client(chunked, false);
        assert_eq!((relay, keep), (Relay::Chunked, true));
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        // An HTTP/1.0 client gets a body of unknown length until the close.
        let (relay, keep, text) = for_client(chunked, true);
        assert_eq!((relay, keep), (Relay::UntilClose, false));
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        let (relay, keep, text) = for_client("HTTP/1.1 204 No Content\r\n\r\n", true);
        assert_eq!((relay, keep), (Relay::AsIs, true));
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
    }

    #[test]
    fn the_front_doors_own_answer_is_complete() {
        let mut out = Vec::new();
        own_answer(StatusCode::BAD_GATEWAY, "no instance\n", false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: 12\r\nconnection: close\r\n\r\nno instance\n"
        );
    }

    #[test]
    fn a_length_body_may_arrive_in_pieces_and_leaves_what_follows() {
        let (mut h, rest) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: x\r\n\r\nhello",
            Method::GET,
        );
        assert_eq!(h.status, 200);
        assert!(h.reusable);
        assert_eq!(value(&h, "content-length").unwrap(), "5");
        assert!(value(&h, "keep-alive").is_none());
        assert_eq!(body(&mut h.framing, &rest, 2, false).unwrap(), b"hello");
        let mut buf = BytesMut::from("hello, next answer");
        let mut framing = Framing::Length(5);
        assert_eq!(
            framing.step(&mut buf, false),
            Ok(Step::Data("hello".into()))
        );
        assert_eq!(framing.step(&mut buf, false), Ok(Step::End));
        assert_eq!(&buf[..], b", next answer");
    }

    #[test]
    fn a_chunked_body_is_decoded_whatever_the_pieces() {
        let text =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n";
        let wire =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (mut h, _) = head(text, Method::GET);
            assert!(value(&h, "content-length").is_none());
            assert!(value(&h, "transfer-encoding").is_none());
            assert!(h.reusable);
            let got = body(&mut h.framing, wire, step, false).unwrap();
            assert_eq!(
                got, b"Wikipedia in\r\n\r\nchunks.",
                "fed {step} bytes at a time"
            );
        }
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        let (mut h, _) = head(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.reusable);
        assert_eq!(
            body(&mut h.framing, b"all of it", 4, true).unwrap(),
            b"all of it"
        );
    }

    #[test]
    fn head_204_and_304_have_no_body_whatever_the_headers() {
        let (h, _) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            Method::HEAD,
        );
        assert!(h.framing.is_done());
        assert_eq!(value(&h, "content-length").unwrap(), "10");
        for status in ["204 No Content", "304 Not Modified"] {
            let (h, _) = head(&format!("HTTP/1.1 {status}\r\n\r\n"), Method::GET);
            assert!(h.framing.is_done(), "{status}");
            assert!(h.reusable, "{status}");
        }
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (h, rest) = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Method::POST,
        );
        assert_eq!(h.status, 201);
        assert!(rest.is_empty());
    }

    #[test]
    fn connection_close_and_http10_are_not_reused() {
        let (h, _) = head(
            "HTTP/1.1 200 OK\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.reusable);
        assert!(value(&h, "connection").is_none());
        assert!(value(&h, "x-hop").is_none());
        let (h, _) = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.reusable);
        let (h, _) = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.reusable);
    }

    #[test]
    fn an_upgrade_is_asked_of_the_instance_and_its_101_taken_only_then() {
        let ask = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n";
        let head = request(ask).unwrap().unwrap();
        assert!(head.upgrade);
        assert_eq!(
            String::from_utf8(head.outgoing.to_vec()).unwrap(),
            "GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k\r\n\
             upgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        // `Upgrade` that `Connection` does not name is no request to switch.
        let head = request("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert!(!head.unwrap().unwrap().upgrade);

        let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\nframe";
        let mut buf = BytesMut::from(switch);
        let h = response_head(&mut buf, &Method::GET, true)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
        assert!(h.framing.is_done() && !h.reusable);
        assert_eq!(value(&h, "upgrade").unwrap(), "websocket");
        assert_eq!(value(&h, "connection").unwrap(), "upgrade");
        assert_eq!(&buf[..], b"frame", "what follows is the new protocol's");
        // A 101 that switches to nothing is refused.
        let mut buf = BytesMut::from("HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(response_head(&mut buf, &Method::GET, true).is_err());
    }

    #[test]
    fn a_partial_head_waits_and_garbage_is_refused() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(
            response_head(&mut buf, &Method::GET, false)
                .unwrap()
                .is_none()
        );
        for bad in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                response_head(&mut buf, &Method::GET, false).is_err(),
                "{bad:?}"
            );
        }
        let mut endless = BytesMut::from("HTTP/1.1 200 OK\r\n");
        endless.extend_from_slice(&b"x-a: b\r\n".repeat(MAX_HEAD / 8));
        assert!(response_head(&mut endless, &Method::GET, false).is_err());
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let mut framing = Framing::Length(10);
        assert!(body(&mut framing, b"short", 5, true).is_err());
        let mut framing = Framing::Chunked(Chunked::Size);
        assert!(body(&mut framing, b"5\r\nab", 5, true).is_err());
        let mut framing = Framing::Chunked(Chunked::Size);
        assert!(body(&mut framing, b"zz\r\n", 5, false).is_err());
    }

    #[test]
    fn a_chunk_frames_its_data() {
        let mut out = Vec::new();
        chunk(b"hello, world", &mut out);
        chunk(b"", &mut out);
        assert_eq!(out, b"c\r\nhello, world\r\n");
    }
}
