//! The codec's invariants, as functions over arbitrary bytes that panic
//! when one breaks: what the fuzz targets (`host/http1/fuzz`) run, and
//! what the corpus replay test runs on every input they kept. Built only
//! with the `props` feature; the front door never calls them.
//!
//! - A head the codec accepts is written in a form it reads back to the
//!   same head (a fixed point), with CRLF lines, one `host`, and one
//!   framing field that says what its [`Framing`] says.
//! - The verdict does not depend on how the bytes arrived: a refusal of a
//!   prefix is a refusal of the whole, and a head taken from a prefix is
//!   the head taken from the whole.
//! - A chunked body decodes to the same bytes, or fails, however it is
//!   split; what [`Framing::forward`] writes decodes to the same bytes,
//!   and never ends a body the client did not end.
//! - A stream of pipelined requests reaches an instance as exactly the
//!   same requests, read by the codec itself, by a lenient reader as an
//!   application server would have, and judged compliant by AWS's
//!   `http_desync_guardian`, a second opinion written by other people.

use bytes::BytesMut;
use http::Method;
use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::HttpRequestData;

use crate::{Framing, RequestHead, Step, answer_head, request_head, response_head};

/// The front door's address, the `host` of an HTTP/1.0 request without one.
const DOOR: &[u8] = b"door.test:8080";

/// Where `input` is split in two: a position taken from its own bytes, so
/// the same input always splits the same way.
fn split_at(input: &[u8]) -> usize {
    let seed = input
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31) ^ b as usize);
    match input.len() {
        0 => 0,
        n => seed % n,
    }
}

/// Every line of `head` ends in CRLF, it ends with an empty line, and it
/// holds no control character but HTAB.
fn assert_canonical_lines(head: &[u8]) {
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "head does not end with CRLF CRLF: {head:?}"
    );
    for (at, &b) in head.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(head.get(at + 1), Some(&b'\n'), "bare CR written: {head:?}"),
            b'\n' => assert!(at > 0 && head[at - 1] == b'\r', "bare LF written: {head:?}"),
            b'\t' => {}
            b if b < 0x20 || b == 0x7f => panic!("control byte {b:#x} written: {head:?}"),
            _ => {}
        }
    }
}

/// The values of the fields called `name` in a head written by the codec.
fn values<'h>(head: &'h [u8], name: &str) -> Vec<&'h [u8]> {
    crate::written_fields(head)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
        .collect()
}

/// How many fields a head written by the codec holds.
fn field_count(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n').count().saturating_sub(3)
}

/// The head read from `input` whole, or why not (`Ok(None)`: incomplete).
fn read_request(input: &[u8]) -> (Result<Option<RequestHead>, crate::Refused>, usize) {
    let mut buf = BytesMut::from(input);
    let verdict = request_head(&mut buf, DOOR);
    (verdict, input.len() - buf.len())
}

/// The request-head invariants on `input`.
pub fn request_head_holds(input: &[u8]) {
    let (whole, used) = read_request(input);
    // Arriving in two reads changes nothing.
    let (first, _) = read_request(&input[..split_at(input)]);
    match (&first, &whole) {
        (Err(a), Err(b)) => assert_eq!(a.status, b.status, "{input:?}"),
        (Err(a), _) => panic!("a prefix was refused ({a}), the whole was not: {input:?}"),
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a.outgoing, b.outgoing, "{input:?}"),
        (Ok(Some(_)), _) => panic!("a prefix gave a head, the whole did not: {input:?}"),
        (Ok(None), _) => {}
    }
    let head = match whole {
        Ok(Some(head)) => head,
        Ok(None) => return assert!(used == 0 && input.len() < crate::MAX_HEAD),
        Err(refused) => {
            let status = refused.status.as_u16();
            return assert!(
                [400, 405, 414, 417, 431, 501].contains(&status),
                "{refused}"
            );
        }
    };
    assert!(
        input[..used].ends_with(b"\n"),
        "a head taken before its end: {input:?}"
    );
    assert_outgoing(&head);
}

/// A head the codec wrote, without the `connection: close` line it ends
/// with when used once (a client's `Connection` is never forwarded, so
/// such a line is the door's); `None` if it has none.
fn without_close(head: &[u8]) -> Option<Vec<u8>> {
    let kept = head.strip_suffix(b"\r\nconnection: close\r\n\r\n")?;
    Some([kept, b"\r\n\r\n"].concat())
}

/// What the codec writes for a request it took: canonical, read back to
/// itself, one host, framing fields that agree with its framing, and
/// compliant in the eyes of `http_desync_guardian` (which the codec also
/// asks about what it reads: here it judges what is written).
fn assert_outgoing(head: &RequestHead) {
    let out = &head.outgoing[..];
    assert_canonical_lines(out);
    let (again, used) = read_request(out);
    if field_count(out) > crate::MAX_HEADERS {
        // The door adds a field or two of its own: what it reads back
        // then is past the limit it holds every sender to.
        return assert_eq!(again.map(|_| ()).map_err(|e| e.status.as_u16()), Err(431));
    }
    let again = again
        .unwrap_or_else(|e| panic!("the codec refuses its own head ({e}): {out:?}"))
        .unwrap_or_else(|| panic!("the codec's own head is incomplete: {out:?}"));
    assert_eq!(used, out.len());
    if again.outgoing != head.outgoing && !head.reusable {
        // Used once on the second opinion's word, for fields the door
        // then dropped: read back without them, the same head but for
        // its `connection: close`, and from there a fixed point.
        assert_eq!(without_close(out).as_deref(), Some(&again.outgoing[..]));
        return assert_outgoing(&again);
    }
    assert_eq!(again.outgoing, head.outgoing, "not a fixed point");
    assert_eq!(again.body, head.body);
    assert_eq!(values(out, "host").len(), 1, "{out:?}");
    let lengths = values(out, "content-length");
    let codings = values(out, "transfer-encoding");
    match head.body {
        Framing::Chunked(_) => assert!(lengths.is_empty() && codings == [b"chunked"]),
        Framing::Length(n) => {
            assert!(codings.is_empty(), "{out:?}");
            assert!(lengths.len() <= 1, "{out:?}");
            let said = lengths
                .first()
                .map_or(Some(0), |v| std::str::from_utf8(v).ok()?.parse().ok());
            assert_eq!(said, Some(n), "{out:?}");
        }
        Framing::Close => panic!("a request delimited by close"),
    }
    // A body on GET or HEAD is Ambiguous to it (a server may not read
    // it): forwarded, but neither connection carries another request.
    let verdict = HttpRequestData::analyze_raw_request(out);
    let isolated = values(out, "connection") == [b"close"];
    assert!(
        verdict.tier <= RequestSafetyTier::Acceptable
            || (verdict.tier == RequestSafetyTier::Ambiguous && isolated),
        "http_desync_guardian finds the forwarded head {:?} ({:?}): {out:?}",
        verdict.tier,
        verdict.message
    );
}

/// The answer-head invariants on `input`: its first byte picks the
/// request method (`GET` or `HEAD`) and whether it asked to upgrade.
pub fn response_head_holds(input: &[u8]) {
    let Some((&pick, input)) = input.split_first() else {
        return;
    };
    let method = if pick & 1 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let upgrade = pick & 2 != 0;
    let read = |bytes: &[u8]| {
        let mut buf = BytesMut::from(bytes);
        let verdict = response_head(&mut buf, &method, upgrade);
        (verdict, bytes.len() - buf.len())
    };
    let (whole, _) = read(input);
    let (first, _) = read(&input[..split_at(input)]);
    match (&first, &whole) {
        (Err(_), Err(_)) | (Ok(None), _) => {}
        (Err(a), _) => panic!("a prefix was refused ({a}), the whole was not: {input:?}"),
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a.fields, b.fields, "{input:?}"),
        (Ok(Some(_)), _) => panic!("a prefix gave a head, the whole did not: {input:?}"),
    }
    let Ok(Some(head)) = whole else {
        return;
    };
    let code = head.status.as_u16();
    assert!(
        (200..=599).contains(&code) || (code == 101 && upgrade),
        "{code}"
    );
    for name in [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
    ] {
        let written = values(&head.fields, name);
        assert!(
            written.is_empty() || (name == "connection" && code == 101),
            "{name} forwarded as the instance wrote it: {input:?}"
        );
    }
    if code == 101 {
        return;
    }
    // What the client is told reads back as the same answer.
    let mut out = Vec::new();
    answer_head(&head, b"r1", false, true, &mut out);
    assert_canonical_lines(&out);
    let mut buf = BytesMut::from(&out[..]);
    let again = response_head(&mut buf, &method, false);
    if field_count(&out) > crate::MAX_HEADERS {
        // The door adds fields of its own: past the limit it holds
        // every instance to (which a client need not share).
        let refused = crate::Malformed("too many header fields");
        return assert_eq!(again.map(|_| ()), Err(refused));
    }
    let again = again
        .unwrap_or_else(|e| panic!("the codec refuses its own answer ({e}): {out:?}"))
        .unwrap_or_else(|| panic!("the codec's own answer is incomplete: {out:?}"));
    assert!(buf.is_empty());
    assert_eq!(again.status, head.status);
    assert!(again.fields.starts_with(&head.fields));
    let body = |f: Framing| match f {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    assert_eq!(body(again.framing), body(head.framing), "{out:?}");
    assert_eq!(again.length, head.length, "{out:?}");
}

/// Decode a chunked body from `pieces`, fed in turn, the sender closing
/// after the last if it `closes`: the bytes, and whether it ended
/// (`None`: malformed, or cut short by the close).
fn decode(pieces: &[&[u8]], closes: bool) -> Option<(Vec<u8>, bool)> {
    let mut framing = Framing::CHUNKED;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        let eof = closes && n + 1 == pieces.len();
        loop {
            match framing.step(&mut buf, eof) {
                Ok(Step::Data(d)) => data.extend_from_slice(&d),
                Ok(Step::More) => break,
                Ok(Step::End) => return Some((data, true)),
                Err(_) => return None,
            }
        }
    }
    Some((data, false))
}

/// The chunked-body invariants on `input`.
pub fn chunked_holds(input: &[u8]) {
    let at = split_at(input);
    let whole = decode(&[input], true);
    assert_eq!(
        decode(&[&input[..at], &input[at..]], true),
        whole,
        "{input:?}"
    );
    // What the front door writes for it, read as it arrives in two parts.
    let mut framing = Framing::CHUNKED;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut ended = false;
    let mut failed = false;
    for piece in [&input[..at], &input[at..]] {
        buf.extend_from_slice(piece);
        match framing.forward(&mut buf, &mut out) {
            Ok(done) => ended = done,
            Err(_) => failed = true,
        }
        if ended || failed {
            break;
        }
    }
    let rewritten = decode(&[&out], false);
    match whole {
        Some((data, true)) => {
            assert!(ended && !failed, "{input:?}");
            assert_eq!(rewritten, Some((data, true)), "{input:?}");
        }
        _ => {
            assert!(
                !ended,
                "a body ended that the client did not end: {input:?}"
            );
            let (_, rewritten_ended) = rewritten.expect("the door wrote a malformed chunk");
            assert!(!rewritten_ended, "{out:?}");
        }
    }
}

/// A request as it reaches an instance: its head, its body decoded.
type Message = (Vec<u8>, Vec<u8>);

/// One request as an application server behind the door would read it
/// from `wire`, leniently (httparse, a decimal length, hex chunk sizes
/// with anything after a `;`): its head and body, and how many bytes it
/// took. `None`: the stream ends (or breaks) there.
fn lenient_request(wire: &[u8]) -> Option<(Message, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; 200];
    let mut request = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(len) = request.parse(wire).ok()? else {
        return None;
    };
    let field = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let mut at = len;
    let mut body = Vec::new();
    if field("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line_len = wire[at..].windows(2).position(|w| w == b"\r\n")?;
            let line = String::from_utf8_lossy(&wire[at..at + line_len]).to_string();
            at += line_len + 2;
            let size = line.split(';').next()?.trim();
            let size = usize::from_str_radix(size, 16).ok()?;
            if size == 0 {
                // No trailers: the door writes none.
                return (wire.get(at..at + 2)? == b"\r\n")
                    .then(|| ((wire[..len].to_vec(), body), at + 2));
            }
            body.extend_from_slice(wire.get(at..at + size)?);
            at += size + 2;
        }
    }
    if let Some(length) = field("content-length") {
        let length: usize = length.parse().ok()?;
        body.extend_from_slice(wire.get(at..at + length)?);
        at += length;
    }
    Some(((wire[..len].to_vec(), body), at))
}

/// The pipelining invariants on `input`, a client's stream: the requests
/// the door forwards are read back from its output as the same requests,
/// by the codec and by a lenient server alike.
pub fn stream_holds(input: &[u8]) {
    let (sent, wire) = forward_stream(input);
    let (again, _) = forward_stream(&wire);
    // Read back, a request used once on the second opinion's word loses
    // that reason with the fields the door dropped (see assert_outgoing).
    let use_once = |m: &Message| (without_close(&m.0).unwrap_or(m.0.clone()), m.1.clone());
    assert_eq!(
        again.iter().map(use_once).collect::<Vec<_>>(),
        sent.iter().map(use_once).collect::<Vec<_>>(),
        "the forwarded stream reads as other requests: {wire:?}"
    );
    let mut at = 0;
    for (head, body) in &sent {
        let ((h, b), used) = lenient_request(&wire[at..])
            .unwrap_or_else(|| panic!("a server cannot read what the door sent: {wire:?}"));
        assert_eq!(
            (&h, &b),
            (head, body),
            "a server reads another request: {wire:?}"
        );
        at += used;
    }
    assert_eq!(
        at,
        wire.len(),
        "a server finds more than was forwarded: {wire:?}"
    );
}

/// The requests the door takes from `input`, one after the other while
/// each is whole (head as forwarded, body decoded), and the bytes it
/// writes to the instance for them.
fn forward_stream(input: &[u8]) -> (Vec<Message>, Vec<u8>) {
    let mut buf = BytesMut::from(input);
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    while let Ok(Some(head)) = request_head(&mut buf, DOOR) {
        assert_outgoing(&head);
        if head.upgrade {
            break;
        }
        let mut body_wire = Vec::new();
        let mut framing = head.body;
        if !matches!(framing.forward(&mut buf, &mut body_wire), Ok(true)) {
            break;
        }
        let body = match head.body {
            Framing::Chunked(_) => decode(&[&body_wire], false)
                .map(|(d, _)| d)
                .unwrap_or_default(),
            _ => body_wire.clone(),
        };
        wire.extend_from_slice(&head.outgoing);
        wire.extend_from_slice(&body_wire);
        sent.push((head.outgoing.to_vec(), body));
        // The door reads nothing more from a client it closes on, and
        // sends nothing more on an instance connection used once.
        if !head.keep_alive || !head.reusable {
            assert!(
                !head.keep_alive,
                "an instance connection closed under a kept client"
            );
            break;
        }
    }
    (sent, wire)
}
