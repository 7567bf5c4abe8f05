//! An instance's answer head, judged as strictly as a client's request,
//! and the heads the front door writes to its client: the instance's
//! answer with the framing the front door chose, a `101`, or its own.

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};

use crate::body::Framing;
use crate::fields::{self, Options};
use crate::{MAX_HEADERS, Malformed, Unfit, field, head_len};

/// Fields of an answer that belong to its connection or its framing, or
/// that the front door writes itself (`x-rollout-revision`, so an
/// instance cannot claim another revision).
const NOT_FORWARDED: [&str; 10] = [
    "x-rollout-revision",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "trailer",
    "upgrade",
    "te",
];

/// A parsed answer head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Its status line and end-to-end fields as they go to the client,
    /// without framing fields or the empty line that ends a head.
    pub fields: Vec<u8>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The `content-length` the client is told: the body's length, or
    /// the one an answer to `HEAD` (or a `304`) announced.
    pub length: Option<u64>,
    /// Whether the connection may carry another request after this body.
    pub reusable: bool,
}

/// Parse an answer head from the front of `buf`, removing it. `Ok(None)`:
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
        let len = match head_len(response.parse(buf), buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(Unfit::TooLarge) => return Err(Malformed("answer head too large")),
            Err(Unfit::TooManyFields) => return Err(Malformed("too many header fields")),
            Err(Unfit::Unparsable(why)) => return Err(Malformed(why)),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|_| code <= 599)
            .ok_or(Malformed("invalid status code"))?;
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
        let mut lengths = Vec::new();
        let (mut codings, mut chunked) = (0, 0);
        let mut connection = Options::default();
        let mut protocols = None;
        for h in response.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths.push(
                    fields::content_length(h.value).ok_or(Malformed("invalid content-length"))?,
                );
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                codings += 1;
                fields::transfer_codings(h.value, &mut chunked).map_err(|e| {
                    Malformed(match e {
                        fields::CodingError::Unimplemented => "transfer coding other than chunked",
                        fields::CodingError::Invalid => "empty transfer-encoding",
                    })
                })?;
            } else if name.eq_ignore_ascii_case(b"connection") {
                connection
                    .add(h.value)
                    .map_err(|()| Malformed("invalid connection option"))?;
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                protocols.get_or_insert(h.value);
            }
        }
        let length = match lengths[..] {
            [] => None,
            [n] => Some(n),
            _ => return Err(Malformed("more than one content-length")),
        };
        if codings > 0 && (http10 || length.is_some() || chunked > 1) {
            return Err(Malformed(match (http10, length) {
                (true, _) => "transfer-encoding in an HTTP/1.0 answer",
                (false, Some(_)) => "both content-length and transfer-encoding",
                (false, None) => "chunked applied more than once",
            }));
        }
        let switched = match (switching, protocols) {
            (false, _) => None,
            (true, Some(p)) => Some(p),
            (true, None) => return Err(Malformed("101 Switching Protocols without Upgrade")),
        };
        // A 204 must not announce a length (RFC 9110 8.6): if one does,
        // its bytes may still come and be read as the next answer.
        let stray_body = status == StatusCode::NO_CONTENT && length.is_some_and(|n| n > 0);
        let bodiless = *method == Method::HEAD
            || switching
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let (framing, length) = match (bodiless, codings > 0, length) {
            // A length on an answer without a body only announces one (RFC
            // 9110 8.6): kept for HEAD and 304, never for 204 or 101.
            (true, _, n) => {
                let announces = *method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
                (Framing::Length(0), n.filter(|_| announces))
            }
            (false, true, _) => (Framing::CHUNKED, None),
            (false, false, Some(n)) => (Framing::Length(n), Some(n)),
            (false, false, None) => (Framing::Close, None),
        };
        let mut out = Vec::with_capacity(len + 64);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(response.reason.unwrap_or_default().as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in response.headers.iter() {
            let dropped = NOT_FORWARDED.iter().any(|n| h.name.eq_ignore_ascii_case(n))
                || connection.names(h.name)
                || !fields::is_forwardable_name(h.name.as_bytes());
            if !dropped {
                field(&mut out, h.name.as_bytes(), h.value);
            }
        }
        if let Some(protocols) = switched {
            field(&mut out, b"upgrade", protocols);
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        // HTTP/1.0 closes unless told to keep alive; HTTP/1.1 keeps alive
        // unless told to close. A switched connection is a tunnel.
        let reusable = !switching
            && !connection.close
            && (!http10 || connection.keep_alive)
            && framing != Framing::Close
            && !stray_body;
        buf.advance(len);
        return Ok(Some(ResponseHead {
            status,
            fields: out,
            framing,
            length,
            reusable,
        }));
    }
}

/// How an answer's body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// As the instance delimited it (by its length, or no body).
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
    match (relay, answer.length) {
        (Relay::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (_, Some(n)) => field(out, b"content-length", n.to_string().as_bytes()),
        (_, None) => {}
    }
    field(out, b"x-rollout-revision", revision);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> (ResponseHead, BytesMut) {
        let mut buf = BytesMut::from(text);
        let head = response_head(&mut buf, &method, false).unwrap().unwrap();
        (head, buf)
    }

    /// The head `answer` gets for a client (`http10`, wanting to keep
    /// its connection): how its body goes, whether it stays, the text.
    fn for_client(answer: &str, method: Method, http10: bool) -> (Relay, bool, String) {
        let (h, _) = head(answer, method);
        let mut out = Vec::new();
        let (relay, keep) = answer_head(&h, b"r1", http10, true, &mut out);
        (relay, keep, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_answer_head_tells_the_client_how_its_body_comes() {
        let (relay, keep, text) = for_client(
            "HTTP/1.1 200 OK\r\nContent-Length: 02\r\nKeep-Alive: x\r\nX: 1\r\n\r\nhi",
            Method::GET,
            false,
        );
        assert_eq!((relay, keep), (Relay::AsIs, true));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nX: 1\r\ncontent-length: 2\r\nx-rollout-revision: r1\r\n\r\n"
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (relay, keep, text) = for_client(chunked, Method::GET, false);
        assert_eq!((relay, keep), (Relay::Chunked, true));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-rollout-revision: r1\r\n\r\n"
        );
        // An HTTP/1.0 client gets a body of unknown length until the close.
        let (relay, keep, text) = for_client(chunked, Method::GET, true);
        assert_eq!((relay, keep), (Relay::UntilClose, false));
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        let (relay, keep, text) = for_client("HTTP/1.1 204 No Content\r\n\r\n", Method::GET, true);
        assert_eq!((relay, keep), (Relay::AsIs, true));
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
    }

    #[test]
    fn an_instance_cannot_name_its_revision_nor_reuse_a_connection_after_a_stray_204_body() {
        let (h, _) = head(
            "HTTP/1.1 204 No Content\r\nX-Rollout-Revision: r9\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.fields, b"HTTP/1.1 204 No Content\r\n");
        assert!(!h.reusable);
        let (h, _) = head("HTTP/1.1 204 No Content\r\n\r\n", Method::GET);
        assert!(h.reusable);
    }

    #[test]
    fn connection_cannot_remove_an_answers_length() {
        let (h, rest) = head(
            "HTTP/1.1 200 OK\r\nConnection: Content-Length, x-hop\r\nX-Hop: 1\r\n\
             Content-Length: 3\r\n\r\nabcGARBAGE",
            Method::GET,
        );
        assert_eq!((h.framing, h.length), (Framing::Length(3), Some(3)));
        assert!(h.reusable);
        assert_eq!(String::from_utf8(h.fields).unwrap(), "HTTP/1.1 200 OK\r\n");
        assert_eq!(&rest[..], b"abcGARBAGE");
    }

    #[test]
    fn head_204_and_304_have_no_body_whatever_the_fields() {
        let (_, _, text) = for_client(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            Method::HEAD,
            false,
        );
        assert!(text.contains("content-length: 10\r\n"), "{text}");
        let (h, _) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            Method::HEAD,
        );
        assert!(h.framing.is_done());
        for (status, kept) in [("204 No Content", false), ("304 Not Modified", true)] {
            let (h, _) = head(
                &format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n"),
                Method::GET,
            );
            assert!(h.framing.is_done(), "{status}");
            // A 204's length is a stray body that may still come.
            assert_eq!((h.length.is_some(), h.reusable), (kept, kept), "{status}");
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
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.reusable);
        let (h, _) = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.reusable);
        let (h, _) = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.reusable);
        let (h, _) = head("HTTP/1.1 200 OK\r\nX: 1\r\n\r\n", Method::GET);
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.reusable);
    }

    #[test]
    fn a_101_is_taken_only_for_an_upgrade() {
        let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\nframe";
        let mut buf = BytesMut::from(switch);
        let h = response_head(&mut buf, &Method::GET, true)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
        assert!(h.framing.is_done() && !h.reusable);
        assert_eq!(
            String::from_utf8(h.fields).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n\
             upgrade: websocket\r\nconnection: upgrade\r\n"
        );
        assert_eq!(&buf[..], b"frame", "what follows is the new protocol's");
        let mut buf = BytesMut::from("HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(response_head(&mut buf, &Method::GET, true).is_err());
    }

    #[test]
    fn answers_that_cannot_be_framed_safely_are_refused() {
        let mut partial = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(
            response_head(&mut partial, &Method::GET, false)
                .unwrap()
                .is_none()
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\xc2\xa0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            b"HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            let got = response_head(&mut buf, &Method::GET, false);
            assert!(got.is_err(), "{:?} gave {got:?}", bad.escape_ascii());
        }
        let mut endless = BytesMut::from("HTTP/1.1 200 OK\r\n");
        endless.extend_from_slice(&b"x-a: b\r\n".repeat(crate::MAX_HEAD / 8));
        assert!(response_head(&mut endless, &Method::GET, false).is_err());
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
}
