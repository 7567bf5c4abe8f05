//! A second opinion on every request head the codec takes: AWS's
//! `http_desync_guardian`, a classifier written by other people against
//! their own vectors. The codec's rules come first and give the reasons a
//! client reads; this catches what they might let through, and acts as
//! its authors advise: a request it finds severe is refused, one it finds
//! ambiguous goes on connections used once.
//!
//! It reads the fields httparse already split, without allocating for a
//! compliant head of up to 64 fields (a verdict against one writes its
//! reason): about 4% of the front door's CPU time per request, measured
//! with `rollout bench proxy` (see the README's performance section).

use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::{HttpHeader, HttpRequestData};

/// What the second opinion asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing more.
    Fine,
    /// Forward it, but let neither connection carry another request.
    UseOnce,
    /// Refuse it.
    Refuse,
}

/// The verdict on a request head, parsed by httparse.
pub(crate) fn verdict(
    method: &str,
    http10: bool,
    target: &str,
    headers: &[httparse::Header],
) -> Verdict {
    let mut request = HttpRequestData {
        method: method.as_bytes(),
        version: if http10 { b"HTTP/1.0" } else { b"HTTP/1.1" },
        uri: target.as_bytes(),
        headers: headers
            .iter()
            .map(|h| HttpHeader::new(h.name.as_bytes(), h.value))
            .collect(),
    };
    match request.analyze_parsed_request().tier {
        RequestSafetyTier::Compliant | RequestSafetyTier::Acceptable => Verdict::Fine,
        RequestSafetyTier::Ambiguous => Verdict::UseOnce,
        RequestSafetyTier::Severe => Verdict::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(head: &str) -> Verdict {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut fields);
        request.parse(head.as_bytes()).unwrap();
        let http10 = request.version == Some(0);
        verdict(
            request.method.unwrap(),
            http10,
            request.path.unwrap(),
            request.headers,
        )
    }

    #[test]
    fn it_judges_framing_fields() {
        assert_eq!(
            of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"),
            Verdict::Fine
        );
        assert_eq!(
            of("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"),
            Verdict::UseOnce
        );
        let twice = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(of(twice), Verdict::Refuse);
    }
}
