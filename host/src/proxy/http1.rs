//! HTTP/1.1 on the wire to an instance: the request head the front door
//! writes, the response head it reads, and how the response body is
//! delimited (RFC 9112, sections 6 and 7).
//!
//! Pure functions over byte buffers, so every framing case is unit-tested
//! without a socket; [`super::upstream`] drives them on a connection.

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

/// The largest response head accepted from an instance.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a response head.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// An instance answered something that is not HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed answer from the instance: {0}")]
pub struct Malformed(pub &'static str);

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
/// `Keep-Alive`, hop-by-hop too (hyper has no constant for it).
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Whether `name` is hop-by-hop and must not be forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == KEEP_ALIVE
}

/// The fields `Connection` names in `headers`: hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect()
}

/// The request head for an instance: `method target HTTP/1.1`, the
/// client's headers (its `Host` included) minus hop-by-hop ones and
/// `Expect` (the front door already answered it), and `Transfer-Encoding:
/// chunked` when `chunked` (a body of unknown length).
pub fn request_head(parts: &hyper::http::request::Parts, chunked: bool) -> Bytes {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let listed = connection_listed(&parts.headers);
    for (name, value) in &parts.headers {
        if hop_by_hop(name) || name == header::EXPECT || listed.contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.into()
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// End-to-end headers (hop-by-hop ones removed).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub reusable: bool,
}

/// Parse a response head from the front of `buf`, removing it. `Ok(None)`:
/// not complete yet. Interim (1xx) answers are skipped; a 101 is refused
/// (upgrades are not forwarded).
pub fn response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, Malformed> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(Malformed("response head too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many headers")),
            Err(_) => return Err(Malformed("unparsable response head")),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Malformed("invalid status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Malformed(
                "101 Switching Protocols: upgrades are not forwarded",
            ));
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let http10 = response.version == Some(0);
        // Where each field lies in the head, so values are slices of it.
        let base = buf.as_ptr() as usize;
        let spans: Vec<(HeaderName, std::ops::Range<usize>)> = response
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| Malformed("invalid header name"))?;
                let start = h.value.as_ptr() as usize - base;
                Ok((name, start..start + h.value.len()))
            })
            .collect::<Result<_, Malformed>>()?;
        let head = buf.split_to(len).freeze();
        return parse_fields(head, spans, status, method, http10).map(Some);
    }
}

/// The end-to-end headers, framing and reusability of a response.
fn parse_fields(
    head: Bytes,
    spans: Vec<(HeaderName, std::ops::Range<usize>)>,
    status: StatusCode,
    method: &Method,
    http10: bool,
) -> Result<ResponseHead, Malformed> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut listed = Vec::new();
    let mut length: Option<u64> = None;
    let mut chunked = None;
    // HTTP/1.0 closes unless told to keep alive; HTTP/1.1 keeps alive
    // unless told to close.
    let mut reusable = !http10;
    for (name, span) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(span))
            .map_err(|_| Malformed("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed("conflicting content-length headers"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // Only the last coding says whether the body is chunked.
            let last = value.as_bytes().rsplit(|&b| b == b',').next();
            chunked = Some(last.is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")));
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    reusable = true;
                } else if let Ok(field) = HeaderName::from_bytes(token) {
                    listed.push(field);
                }
            }
        }
        if !hop_by_hop(&name) {
            headers.append(name, value);
        }
    }
    for field in listed {
        headers.remove(field);
    }
    let bodiless = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (bodiless, chunked, length) {
        (true, _, _) => Framing::Length(0),
        (false, Some(true), _) => {
            // A length next to chunked is a smuggling attempt: drop it.
            headers.remove(header::CONTENT_LENGTH);
            Framing::Chunked(Chunked::Size)
        }
        // Another coding last: the body runs until the connection closes.
        (false, Some(false), _) => Framing::Close,
        (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::Close,
    };
    if framing == Framing::Close {
        reusable = false;
        headers.remove(header::CONTENT_LENGTH);
    }
    Ok(ResponseHead {
        status,
        headers,
        framing,
        reusable,
    })
}

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

/// Frame `data` as one chunk of a chunked request body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked request body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> (ResponseHead, BytesMut) {
        let mut buf = BytesMut::from(text);
        let head = response_head(&mut buf, &method).unwrap().unwrap();
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

    #[test]
    fn a_request_head_drops_hop_by_hop_headers_and_keeps_host() {
        let req = hyper::Request::builder()
            .method("POST")
            .uri("http://example.test/a?b=1")
            .header("host", "example.test")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("expect", "100-continue")
            .header("x-one", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let text = String::from_utf8(request_head(&parts, true).to_vec()).unwrap();
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nhost: example.test\r\nx-one: 1\r\n\
             transfer-encoding: chunked\r\n\r\n"
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
        assert_eq!(h.headers["content-length"], "5");
        assert!(h.headers.get("keep-alive").is_none());
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
            assert!(h.headers.get("content-length").is_none());
            assert!(h.headers.get("transfer-encoding").is_none());
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
        assert_eq!(h.headers["content-length"], "10");
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
        assert!(h.headers.get("connection").is_none());
        assert!(h.headers.get("x-hop").is_none());
        let (h, _) = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.reusable);
        let (h, _) = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.reusable);
    }

    #[test]
    fn a_partial_head_waits_and_garbage_is_refused() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(response_head(&mut buf, &Method::GET).unwrap().is_none());
        for bad in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(response_head(&mut buf, &Method::GET).is_err(), "{bad:?}");
        }
        let mut endless = BytesMut::from("HTTP/1.1 200 OK\r\n");
        endless.extend_from_slice(&b"x-a: b\r\n".repeat(MAX_HEAD / 8));
        assert!(response_head(&mut endless, &Method::GET).is_err());
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
    fn a_request_chunk_frames_its_data() {
        assert_eq!(chunk(b"hello, world"), b"c\r\nhello, world\r\n");
    }
}
