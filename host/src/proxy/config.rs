//! How a front door treats its clients ([`Door`]): stickiness, timeouts
//! and its connection limit, with their defaults. The proxy owns these
//! types; a service spec's `[traffic]` converts into them.

use std::time::Duration;

use super::sticky::Sticky;

/// Idle timeout when none is given: nginx's `keepalive_timeout` is 75 s,
/// its body and send timeouts 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Head timeout when none is given (nginx's `client_header_timeout`).
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Upstream timeout when none is given (nginx's `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Client connections a door holds when no limit is given. The agent's
/// file descriptors bound it further, for all front doors together.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How a front door treats its clients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Door {
    /// How it pins clients to a revision, if it does.
    pub sticky: Option<Sticky>,
    /// A connection with no request under way closes after this long
    /// without one; a client that stops sending a body or reading an
    /// answer for this long is cut off.
    pub idle_timeout: Duration,
    /// A request's head must arrive whole within this long of its first
    /// byte, else `408 Request Timeout` and the connection closes.
    pub head_timeout: Duration,
    /// An instance must answer within this long (the head of its answer),
    /// else its client gets `504 Gateway Timeout`, an error of its
    /// revision; and it must not pause this long within its answer's body.
    pub upstream_timeout: Duration,
    /// The most client connections it holds (see [`super::admission`]).
    pub max_connections: usize,
}

impl Default for Door {
    /// Not sticky, the default timeouts and limit.
    fn default() -> Self {
        Door {
            sticky: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}
