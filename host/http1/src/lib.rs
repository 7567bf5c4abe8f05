//! The front door's HTTP/1.1 codec (RFC 9112): the request it reads from
//! a client and writes to an instance, the answer it reads from the
//! instance and writes back, and how each body is delimited.
//!
//! It is the one framing authority between the two sides: no field that
//! frames or routes a message is ever forwarded byte for byte. A head is
//! parsed by httparse (fields borrowed from the read buffer, no header
//! map), judged strictly, and written anew: `host` first, the end-to-end
//! fields, then a `content-length` or `transfer-encoding: chunked` that the
//! front door decided; a chunked body is decoded and chunked anew, without
//! its extensions or trailers. So the bytes an instance receives hold
//! exactly the request boundaries the front door saw.
//!
//! The rules, each a refusal that closes the connection:
//!
//! | what | request (client) | answer (instance) |
//! |---|---|---|
//! | a bare CR anywhere, obs-fold, a NUL or other control in a value, a space before a colon, an invalid field name | 400 | 502 |
//! | `Content-Length` not 1*DIGIT (sign, list, NBSP), twice (even equal), or past 2^64 | 400 | 502 |
//! | `Transfer-Encoding` with a coding other than `chunked` | 501 | 502 |
//! | `chunked` twice, an empty `Transfer-Encoding`, it with `Content-Length`, or in HTTP/1.0 | 400 | 502 |
//! | chunk size not 1*HEXDIG, past 2^64, a line not ending in CRLF, bad extensions or trailers | 400 | 502 if none of the answer went out yet, else the client is cut off |
//! | no `Host`, two, or an invalid one (HTTP/1.1) | 400 | |
//! | absolute-form target: its authority replaces `Host`; userinfo or another scheme | 400 | |
//! | `*` but for OPTIONS, `#` or non-ASCII in the target | 400 | |
//! | `CONNECT` / a target over 8 KiB / a head over 64 KiB or 128 fields / `Expect` but 100-continue | 405 / 414 / 431 / 417 | 502 (head) |
//! | status outside 100-599, a `101` not asked for | | 502 |
//!
//! `Connection` never removes `Host`, `Content-Length` or
//! `Transfer-Encoding`, nor changes the framing; a bare LF ending a head
//! line is taken (RFC 9112 2.2), never in a chunk line. A field whose name
//! holds anything but letters, digits and inner hyphens, or spells a
//! framing or routing field otherwise (`Transfer_Encoding`,
//! `Content--Length`), is not forwarded. A body on `GET` or `HEAD` is
//! forwarded with `connection: close`, and neither connection carries
//! another request (an instance may have left the body unread). Only a
//! WebSocket upgrade is offered to an instance (no `h2c`); an instance's
//! `x-rollout-revision` is replaced by the door's, and a `204` with a
//! length ends its connection. Pure functions over byte buffers, so every case is
//! tested without a socket; the `props` feature states the invariants
//! the fuzz targets (`fuzz/`) check.

mod body;
mod fields;
#[cfg(feature = "props")]
pub mod props;
mod request;
mod response;
mod second_opinion;

pub use body::{Chunked, Framing, LAST_CHUNK, Step, chunk};
pub use request::{Refused, RequestHead, request_head};
pub use response::{
    CONTINUE, Relay, ResponseHead, answer_head, own_answer, response_head, switch_head,
};

/// The largest request or answer head accepted (and trailer section).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a head.
const MAX_HEADERS: usize = 128;

/// An instance answered something that is not strict HTTP/1.1, or a body
/// (either side's) broke its framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct Malformed(pub &'static str);

/// Why a head cannot be taken.
enum Unfit {
    /// Still incomplete at [`MAX_HEAD`] bytes.
    TooLarge,
    /// More than [`MAX_HEADERS`] fields.
    TooManyFields,
    /// Not HTTP/1.x, for this reason.
    Unparsable(&'static str),
}

/// The length of a head httparse `parsed` from `buffered`; `Ok(None)`:
/// incomplete, more may come.
fn head_len(parsed: httparse::Result<usize>, buffered: &[u8]) -> Result<Option<usize>, Unfit> {
    use httparse::Error;
    match parsed {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Err(Unfit::TooLarge),
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buffered.len() >= MAX_HEAD => Err(Unfit::TooLarge),
        // httparse waits at a CR it has not seen the next byte of: a bare
        // CR is refused once that byte is there.
        Ok(httparse::Status::Partial) => Ok(None),
        Err(Error::TooManyHeaders) => Err(Unfit::TooManyFields),
        Err(Error::HeaderName) => Err(Unfit::Unparsable("invalid field name (or obs-fold)")),
        Err(Error::HeaderValue) => Err(Unfit::Unparsable(
            "invalid field value (a control character or a bare CR)",
        )),
        Err(Error::NewLine) => Err(Unfit::Unparsable("a bare CR ends a line")),
        Err(Error::Version) => Err(Unfit::Unparsable("not HTTP/1.0 or HTTP/1.1")),
        Err(Error::Status) => Err(Unfit::Unparsable("invalid status line")),
        Err(Error::Token) => Err(Unfit::Unparsable("invalid request line")),
    }
}

/// The fields of a head the codec wrote (its first line skipped), names
/// and values: every line is `name: value\r\n`, as [`field`] writes it.
fn written_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line.get(colon + 2..)?))
    })
}

/// Append `name: value\r\n`.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
