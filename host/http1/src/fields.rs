//! The grammar of the fields that decide a message's framing and routing
//! (RFC 9110 and 9112): `Content-Length`, `Transfer-Encoding`,
//! `Connection`, `Host` and the request target's authority. Pure functions
//! over the bytes httparse leaves: a field value arrives trimmed of
//! surrounding spaces and tabs, with no CR, LF or NUL in it.

/// Whether `b` may appear in a token (RFC 9110 5.6.2: a field name, a
/// transfer coding, a connection option, a chunk extension's name).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a token: one or more token characters.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Whether a field called `name` may be forwarded at all. Not when its
/// name holds a character other than a letter, a digit or `-` (nginx's
/// default drops the same) or begins or ends with `-` (no field name
/// does; `Content-Lengt-` looks like one), nor when it spells `Content-Length`,
/// `Transfer-Encoding` or `Host` otherwise: with hyphens moved, added or
/// left out, or one character in place of the hyphen
/// (`Content--Length`, `ContentLength`, `TransferXEncoding`). A lenient
/// server that folds `_` to `-` or skips what is not a letter would take
/// such a field for framing or routing.
pub(crate) fn is_forwardable_name(name: &[u8]) -> bool {
    const GUARDED: [(&[u8], &[u8]); 3] = [
        (b"content", b"length"),
        (b"transfer", b"encoding"),
        (b"host", b""),
    ];
    if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        || name.starts_with(b"-")
        || name.ends_with(b"-")
    {
        return false;
    }
    let mut letters = [0u8; 32];
    let mut len = 0;
    for &b in name.iter().filter(|&&b| b != b'-') {
        match letters.get_mut(len) {
            Some(slot) => *slot = b.to_ascii_lowercase(),
            // Longer than any lookalike.
            None => return true,
        }
        len += 1;
    }
    let letters = &letters[..len];
    let lookalike = |(first, second): (&[u8], &[u8])| {
        let words = first.len() + second.len();
        letters.len() <= words + usize::from(!second.is_empty())
            && letters.starts_with(first)
            && letters.ends_with(second)
            && letters.len() >= words
    };
    let exact = |(first, second): (&[u8], &[u8])| {
        let dash = usize::from(!second.is_empty());
        name.len() == first.len() + dash + second.len()
            && name[..first.len()].eq_ignore_ascii_case(first)
            && name[name.len() - second.len()..].eq_ignore_ascii_case(second)
            && (dash == 0 || name[first.len()] == b'-')
    };
    !GUARDED.into_iter().any(|g| lookalike(g) && !exact(g))
}

/// Whether `b` may appear in a field value (RFC 9110 5.5: VCHAR, SP,
/// HTAB and obs-text).
pub(crate) fn is_field_vchar(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// The elements of a comma-separated list (RFC 9110 5.6.1), trimmed of
/// spaces and tabs; empty elements are skipped, as the list rule allows.
pub(crate) fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// `s` without leading and trailing spaces and tabs (OWS).
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

/// A `Content-Length` value: 1*DIGIT, in range. No sign, no list (a list
/// of equal values is refused, not merged), no other character.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// What is wrong with a `Transfer-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodingError {
    /// A coding other than chunked (the front door implements no other):
    /// 501 for a request.
    Unimplemented,
    /// No coding at all: 400.
    Invalid,
}

/// Count the codings of one `Transfer-Encoding` field line into `chunked`
/// (how many times chunked appeared); `Err` at a coding other than
/// chunked, whatever its place. A field with no coding is invalid.
pub(crate) fn transfer_codings(value: &[u8], chunked: &mut u32) -> Result<(), CodingError> {
    let mut any = false;
    for coding in elements(value) {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(CodingError::Unimplemented);
        }
        *chunked += 1;
        any = true;
    }
    match any {
        true => Ok(()),
        false => Err(CodingError::Invalid),
    }
}

/// Fields that `Connection` can never remove: those the front door frames
/// and routes by. It writes their framing itself.
const PROTECTED: [&[u8]; 3] = [b"host", b"content-length", b"transfer-encoding"];

/// The options of a `Connection` field.
#[derive(Debug, Default)]
pub(crate) struct Options<'h> {
    /// `close`.
    pub close: bool,
    /// `keep-alive`.
    pub keep_alive: bool,
    /// `upgrade`.
    pub upgrade: bool,
    /// Other fields it names, hop-by-hop for this message (never a
    /// protected one).
    pub listed: Vec<&'h [u8]>,
}

impl<'h> Options<'h> {
    /// Add the options of one `Connection` field line; `Err` when one is
    /// not a token.
    pub fn add(&mut self, value: &'h [u8]) -> Result<(), ()> {
        for option in elements(value) {
            if !is_token(option) {
                return Err(());
            }
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if !PROTECTED.iter().any(|p| option.eq_ignore_ascii_case(p)) {
                self.listed.push(option);
            }
        }
        Ok(())
    }

    /// Whether field `name` is one this message's `Connection` names.
    pub fn names(&self, name: &str) -> bool {
        self.listed
            .iter()
            .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Whether `value` is a valid `Host` or authority: `uri-host [":" port]`
/// (RFC 9110 7.2, RFC 3986 3.2.2), with no userinfo and a host that is
/// not empty.
pub(crate) fn is_authority(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                let valid = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !valid {
                    return false;
                }
                match &value[end + 1..] {
                    [] => return true,
                    [b':', port @ ..] => (&value[..=end], port),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => match value.iter().rposition(|&b| b == b':') {
            Some(at) => (&value[..at], &value[at + 1..]),
            None => (value, &[][..]),
        },
    };
    let host_ok = host.first() == Some(&b'[') || (!host.is_empty() && is_reg_name(host));
    host_ok && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

/// Whether `host` is a reg-name or IPv4 address: unreserved characters,
/// sub-delims and percent-encoded octets.
fn is_reg_name(host: &[u8]) -> bool {
    let mut bytes = host.iter();
    while let Some(&b) = bytes.next() {
        let fine = match b {
            b'%' => {
                let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
                hex(bytes.next()) && hex(bytes.next())
            }
            b if b.is_ascii_alphanumeric() => true,
            b => b"-._~!$&'()*+,;=".contains(&b),
        };
        if !fine {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_of_framing_and_routing_fields_are_not_forwarded() {
        for name in [
            "X-Trace",
            "content-length",
            "Transfer-Encoding",
            "HOST",
            "Hostname",
            "X-Host",
        ] {
            assert!(is_forwardable_name(name.as_bytes()), "{name}");
        }
        for name in [
            "Transfer_Encoding",
            "#Transfer-Encoding",
            "Content-Lengt`",
            "Content--Length",
            "ContentLength",
            "-Content-Length",
            "Content-Length-",
            "Content-Lengt-",
            "Transfer-Encodin-",
            "Ho-st",
            "TransfermEncoding",
            "ContentmLength",
            "X_Custom",
            "a.b",
        ] {
            assert!(!is_forwardable_name(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn a_content_length_is_digits_and_nothing_else() {
        for (value, want) in [
            (&b"0"[..], Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"+5", None),
            (b"-1", None),
            (b"5 5", None),
            (b"5,5", None),
            (b"0x5", None),
            (b"5\xc2\xa0", None),
            (b"\xd9\xa5", None),
        ] {
            assert_eq!(content_length(value), want, "{:?}", value.escape_ascii());
        }
    }

    #[test]
    fn chunked_is_the_only_transfer_coding() {
        let count = |v: &[u8]| {
            let mut n = 0;
            transfer_codings(v, &mut n).map(|()| n)
        };
        assert_eq!(count(b"chunked"), Ok(1));
        assert_eq!(count(b"Chunked"), Ok(1));
        assert_eq!(count(b"chunked, "), Ok(1));
        assert_eq!(count(b"chunked, chunked"), Ok(2));
        assert_eq!(count(b""), Err(CodingError::Invalid));
        assert_eq!(count(b" , "), Err(CodingError::Invalid));
        for other in [
            &b"gzip, chunked"[..],
            b"identity, chunked",
            b"chunked, gzip",
            b"xchunked",
            b"\"chunked\"",
            b"chunked;a=b",
            b"chunked\x0b",
            b"chunk",
        ] {
            assert_eq!(
                count(other),
                Err(CodingError::Unimplemented),
                "{:?}",
                other.escape_ascii()
            );
        }
    }

    #[test]
    fn connection_never_names_a_framing_or_routing_field() {
        let mut options = Options::default();
        options
            .add(b"Close, Content-Length, x-private, Host,  Transfer-Encoding")
            .unwrap();
        options.add(b"keep-alive, upgrade").unwrap();
        assert!(options.close && options.keep_alive && options.upgrade);
        assert_eq!(options.listed, [&b"x-private"[..]]);
        assert!(options.names("X-Private") && !options.names("content-length"));
        assert!(Options::default().add(b"a b").is_err());
        assert!(Options::default().add(b"x@y").is_err());
    }

    #[test]
    fn an_authority_is_a_host_and_an_optional_port() {
        for good in [
            &b"example.test"[..],
            b"example.test:8080",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:443",
            b"a%41b",
            b"x:",
            b"a_b-c~d",
        ] {
            assert!(is_authority(good), "{:?}", good.escape_ascii());
        }
        for bad in [
            &b""[..],
            b":80",
            b"user@host",
            b"a b",
            b"host:port",
            b"host:123456",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[g::1]",
            b"a%4",
            b"a/b",
            b"a\\b",
            b"h\xc3\xa9",
        ] {
            assert!(!is_authority(bad), "{:?}", bad.escape_ascii());
        }
    }

    #[test]
    fn ows_is_trimmed_and_lists_skip_empty_elements() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t"), b"");
        let all: Vec<_> = elements(b", a ,,b ,").collect();
        assert_eq!(all, [&b"a"[..], b"b"]);
        assert!(is_token(b"x-a") && !is_token(b"") && !is_token(b"a:b"));
        assert!(is_field_vchar(b'\t') && is_field_vchar(0xa0) && !is_field_vchar(0));
    }
}
