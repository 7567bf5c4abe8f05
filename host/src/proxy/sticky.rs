//! Stickiness: how a client is pinned to a revision, and the key a
//! request carries for it (a header's value, or a cookie's). The routing
//! table hashes the key to a point of its weights ([`super::table`]).

use hyper::header::HeaderName;
use rollout_http1::RequestHead;

/// How a client is pinned to a revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Named", into = "Named")]
pub enum Sticky {
    /// By the value of this request header.
    Header(HeaderName),
    /// By the value of this cookie.
    Cookie(String),
}

/// [`Sticky`] as the front door's control socket carries it: the header
/// name as text.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Named {
    Header(String),
    Cookie(String),
}

impl From<Sticky> for Named {
    fn from(s: Sticky) -> Self {
        match s {
            Sticky::Header(h) => Named::Header(h.as_str().to_string()),
            Sticky::Cookie(c) => Named::Cookie(c),
        }
    }
}

impl TryFrom<Named> for Sticky {
    type Error = String;

    fn try_from(n: Named) -> Result<Self, String> {
        match n {
            Named::Header(h) => HeaderName::try_from(h.as_str())
                .map(Sticky::Header)
                .map_err(|e| format!("bad header name {h:?}: {e}")),
            Named::Cookie(c) => Ok(Sticky::Cookie(c)),
        }
    }
}

impl Sticky {
    /// The client's key among the fields of `request`, if it has one.
    pub(super) fn key<'a>(&self, request: &'a RequestHead) -> Option<&'a [u8]> {
        match self {
            Sticky::Header(name) => request.field(name.as_str()),
            Sticky::Cookie(name) => request
                .fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
                .flat_map(|(_, v)| v.split(|&b| b == b';'))
                .filter_map(|kv| {
                    let at = kv.iter().position(|&b| b == b'=')?;
                    Some((kv[..at].trim_ascii(), kv[at + 1..].trim_ascii()))
                })
                .find(|(k, _)| *k == name.as_bytes())
                .map(|(_, v)| v),
        }
    }
}
