//! Message bodies: how one is delimited ([`Framing`]), the strict decoder
//! of the chunked coding (RFC 9112 7.1), and the framing the front door
//! writes itself on the way out. Chunk boundaries, extensions and trailers
//! never cross it: a chunked body is decoded and chunked anew.

use bytes::{Buf, Bytes, BytesMut};

use crate::fields::{is_field_vchar, is_tchar, is_token};
use crate::{MAX_HEAD, Malformed};

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding, in this state.
    Chunked(Chunked),
    /// Everything until the sender closes the connection (an answer
    /// without a length).
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
    /// After the last chunk: trailer lines until an empty one, this many
    /// bytes of them so far.
    Trailer(usize),
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

impl Framing {
    /// A chunked body, before its first chunk.
    pub const CHUNKED: Framing = Framing::Chunked(Chunked::Size);

    /// Whether the body is known to be complete without reading.
    pub fn is_done(&self) -> bool {
        *self == Framing::Length(0)
    }

    /// Whether it goes in chunks (its length is not known ahead).
    pub fn is_chunked(&self) -> bool {
        matches!(self, Framing::Chunked(_))
    }

    /// Take the next piece of body from `buf`; `eof`: the sender closed
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

    /// Move the body bytes decodable from `buf` into `out`, framed as the
    /// front door forwards them: as they are for a length, as one chunk
    /// for a chunked body (and its last chunk once it ends). Whether the
    /// body is complete.
    pub fn forward(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, Malformed> {
        let chunked = self.is_chunked();
        let mut pieces: Vec<Bytes> = Vec::new();
        let done = loop {
            match self.step(buf, false)? {
                Step::Data(data) => pieces.push(data),
                Step::More => break false,
                Step::End => break true,
            }
        };
        if chunked {
            let len: usize = pieces.iter().map(Bytes::len).sum();
            chunk_size(len, out);
        }
        for piece in &pieces {
            out.extend_from_slice(piece);
        }
        if chunked {
            if !pieces.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            if done {
                out.extend_from_slice(LAST_CHUNK);
            }
        }
        Ok(done)
    }
}

/// The end of line `buf` begins with: the position of its CRLF. A bare LF,
/// a bare CR or a line longer than [`MAX_LINE`] is malformed; `Ok(None)`:
/// not whole yet.
fn line_end(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    let seen = &buf[..buf.len().min(MAX_LINE + 2)];
    for (at, &b) in seen.iter().enumerate() {
        match b {
            b'\n' => return Err(Malformed("bare LF in a chunk line")),
            b'\r' => {
                return match seen.get(at + 1) {
                    Some(b'\n') => Ok(Some(at)),
                    Some(_) => Err(Malformed("bare CR in a chunk line")),
                    None => Ok(None),
                };
            }
            _ => {}
        }
    }
    match seen.len() > MAX_LINE {
        true => Err(Malformed("chunk line too long")),
        false => Ok(None),
    }
}

/// The size of a chunk-size line (without its CRLF): 1*HEXDIG, then
/// extensions only after a `;` (RFC 9112 7.1.1). No sign, prefix or space
/// before the digits; a size beyond 64 bits is refused.
fn chunk_size_of(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return Err(Malformed("invalid chunk size"));
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16).map(u64::from)?;
        n.checked_mul(16)?.checked_add(digit)
    });
    let size = size.ok_or(Malformed("chunk size too large"))?;
    match extensions(&line[digits..]) {
        true => Ok(size),
        false => Err(Malformed("invalid chunk extension")),
    }
}

/// Whether `rest` (what follows a chunk size) is nothing or chunk
/// extensions: `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn extensions(mut rest: &[u8]) -> bool {
    let bws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    let token_len = |s: &[u8]| -> usize { s.iter().take_while(|&&b| is_tchar(b)).count() };
    while !rest.is_empty() {
        rest = &rest[bws(rest)..];
        let Some(after) = rest.strip_prefix(b";") else {
            return false;
        };
        rest = &after[bws(after)..];
        let name = token_len(rest);
        if name == 0 {
            return false;
        }
        rest = &rest[name..];
        let ws = bws(rest);
        if let Some(after) = rest[ws..].strip_prefix(b"=") {
            rest = &after[bws(after)..];
            let value = match rest.first() {
                Some(b'"') => quoted_len(rest),
                _ => Some(token_len(rest)).filter(|&n| n > 0),
            };
            let Some(value) = value else {
                return false;
            };
            rest = &rest[value..];
        }
    }
    true
}

/// The length of the quoted-string `s` begins with, if it is one.
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut at = 1;
    loop {
        match *s.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => {
                let escaped = *s.get(at + 1)?;
                if !is_field_vchar(escaped) {
                    return None;
                }
                at += 2;
            }
            b if is_field_vchar(b) => at += 1,
            _ => return None,
        }
    }
}

/// Whether `line` (without its CRLF) is a field line: `name ":" value`.
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            is_token(&line[..colon]) && line[colon + 1..].iter().all(|&b| is_field_vchar(b))
        }
        None => false,
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
                    let size = chunk_size_of(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = match size {
                        0 => Chunked::Trailer(0),
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
                Chunked::DataEnd => match &buf[..buf.len().min(2)] {
                    b"\r\n" => {
                        buf.advance(2);
                        *self = Chunked::Size;
                    }
                    [] | b"\r" => return Ok(Step::More),
                    _ => return Err(Malformed("chunk data not followed by CRLF")),
                },
                Chunked::Trailer(seen) => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(Step::More);
                    };
                    if end == 0 {
                        buf.advance(2);
                        return Ok(Step::End);
                    }
                    // Trailer fields are checked, then dropped: never
                    // forwarded, so none can reframe anything.
                    if !is_field_line(&buf[..end]) {
                        return Err(Malformed("invalid trailer field"));
                    }
                    let seen = seen + end + 2;
                    if seen > MAX_HEAD {
                        return Err(Malformed("trailer section too large"));
                    }
                    buf.advance(end + 2);
                    *self = Chunked::Trailer(seen);
                }
            }
        }
    }
}

/// Append a chunk-size line for `len` bytes (nothing for none: an empty
/// chunk would end the body).
fn chunk_size(len: usize, out: &mut Vec<u8>) {
    if len > 0 {
        use std::io::Write;
        let _ = write!(out, "{len:x}\r\n");
    }
}

/// Append `data` framed as one chunk of a chunked body (nothing for no
/// data: an empty chunk would end the body).
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if !data.is_empty() {
        chunk_size(data.len(), out);
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole body of `wire`, fed `step` bytes at a time.
    fn decode(
        mut framing: Framing,
        wire: &[u8],
        step: usize,
        eof: bool,
    ) -> Result<Vec<u8>, Malformed> {
        let mut buf = BytesMut::new();
        let mut input = wire.chunks(step.max(1));
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
    fn a_chunked_body_is_decoded_whatever_the_pieces() {
        let wire =
            b"4;ext=1\r\nWiki\r\n5 ; a = \"q\\\"x\" ;b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
                     0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let got = decode(Framing::CHUNKED, wire, step, false).unwrap();
            assert_eq!(
                got, b"Wikipedia in\r\n\r\nchunks.",
                "fed {step} bytes at a time"
            );
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_refused_at_once() {
        for wire in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad name: 1\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx: \x00\r\n\r\n",
        ] {
            // Whole, as one read: an error, not a wait for more.
            let got = decode(Framing::CHUNKED, wire, wire.len(), false);
            assert!(got.is_err(), "{:?} gave {got:?}", wire.escape_ascii());
        }
        assert!(decode(Framing::CHUNKED, &[b'1'; MAX_LINE + 1], MAX_LINE + 1, false).is_err());
        let many = b"x: 1\r\n".repeat(MAX_HEAD / 6 + 1);
        let wire = [&b"0\r\n"[..], &many, b"\r\n"].concat();
        assert!(decode(Framing::CHUNKED, &wire, wire.len(), false).is_err());
    }

    #[test]
    fn big_and_zero_padded_sizes_are_read_exactly() {
        let mut buf =
            BytesMut::from(&b"00000000000000000000003\r\nabc\r\nffffffffffffffff\r\n"[..]);
        let mut framing = Framing::CHUNKED;
        assert_eq!(framing.step(&mut buf, false), Ok(Step::Data("abc".into())));
        assert_eq!(framing.step(&mut buf, false), Ok(Step::More));
        assert_eq!(framing, Framing::Chunked(Chunked::Data(u64::MAX)));
    }

    #[test]
    fn a_length_body_may_arrive_in_pieces_and_leaves_what_follows() {
        assert_eq!(
            decode(Framing::Length(5), b"hello", 2, false).unwrap(),
            b"hello"
        );
        let mut buf = BytesMut::from("hello, next");
        let mut framing = Framing::Length(5);
        assert_eq!(
            framing.step(&mut buf, false),
            Ok(Step::Data("hello".into()))
        );
        assert_eq!(framing.step(&mut buf, false), Ok(Step::End));
        assert_eq!(&buf[..], b", next");
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        assert_eq!(
            decode(Framing::Close, b"all of it", 4, true).unwrap(),
            b"all of it"
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert!(decode(Framing::Length(10), b"short", 5, true).is_err());
        assert!(decode(Framing::CHUNKED, b"5\r\nab", 5, true).is_err());
    }

    #[test]
    fn a_forwarded_body_is_framed_anew() {
        let mut buf = BytesMut::from(&b"4;e=1\r\nWiki\r\n5\r\npedia\r\n"[..]);
        let mut framing = Framing::CHUNKED;
        let mut out = Vec::new();
        assert_eq!(framing.forward(&mut buf, &mut out), Ok(false));
        assert_eq!(out, b"9\r\nWikipedia\r\n", "one chunk, no extension");
        out.clear();
        buf.extend_from_slice(b"0\r\nContent-Length: 5\r\n\r\nnext");
        assert_eq!(framing.forward(&mut buf, &mut out), Ok(true));
        assert_eq!(out, LAST_CHUNK, "no trailer");
        assert_eq!(&buf[..], b"next");

        let mut buf = BytesMut::from("abcdefgh");
        let mut out = Vec::new();
        assert_eq!(Framing::Length(5).forward(&mut buf, &mut out), Ok(true));
        assert_eq!((&out[..], &buf[..]), (&b"abcde"[..], &b"fgh"[..]));
    }

    #[test]
    fn a_chunk_frames_its_data() {
        let mut out = Vec::new();
        chunk(b"hello, world", &mut out);
        chunk(b"", &mut out);
        assert_eq!(out, b"c\r\nhello, world\r\n");
    }
}
